// Forwards to ggml/src/ggml-impl.h (see ggmlcpu.go).
#include "../src/ggml-impl.h"
