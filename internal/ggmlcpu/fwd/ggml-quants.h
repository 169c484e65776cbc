// Forwards to ggml/src/ggml-quants.h (see ggmlcpu.go).
#include "../src/ggml-quants.h"
