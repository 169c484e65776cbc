// Forwards to ggml/src/ggml-common.h (see ggmlcpu.go).
#include "../src/ggml-common.h"
