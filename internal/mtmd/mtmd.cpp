// Compiles llama.cpp's tools/mtmd/mtmd.cpp from the module cache (see mtmd.go).
#include "../tools/mtmd/mtmd.cpp"
