// Forwards to ggml/src/ggml-cpu/simd-mappings.h (see ggmlcpu.go).
#include "../src/ggml-cpu/simd-mappings.h"
