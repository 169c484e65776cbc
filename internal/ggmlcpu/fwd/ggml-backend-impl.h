// Forwards to ggml/src/ggml-backend-impl.h (see ggmlcpu.go).
#include "../src/ggml-backend-impl.h"
