// Compiles llama.cpp's tools/mtmd/mtmd-audio.cpp from the module cache (see mtmd.go).
#include "../tools/mtmd/mtmd-audio.cpp"
