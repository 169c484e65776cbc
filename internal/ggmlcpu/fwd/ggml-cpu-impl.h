// Forwards to ggml/src/ggml-cpu/ggml-cpu-impl.h (see ggmlcpu.go).
#include "../src/ggml-cpu/ggml-cpu-impl.h"
