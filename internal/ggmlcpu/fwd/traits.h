// Forwards to ggml/src/ggml-cpu/traits.h (see ggmlcpu.go).
#include "../src/ggml-cpu/traits.h"
