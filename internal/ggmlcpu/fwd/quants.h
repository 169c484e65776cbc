// Forwards to ggml/src/ggml-cpu/quants.h (see ggmlcpu.go).
#include "../src/ggml-cpu/quants.h"
