// ggml's AMX kernels, compiled into the CPU backend (see ggmlcpu.go). The
// paths resolve against ggml/include on the include path.
#include "../src/ggml-cpu/amx/amx.cpp"
#include "../src/ggml-cpu/amx/mmq.cpp"

extern "C" int lldiff_amx_compiled(void) {
#if defined(__AMX_INT8__) && defined(__AVX512VNNI__)
    return 1;
#else
    return 0;
#endif
}
