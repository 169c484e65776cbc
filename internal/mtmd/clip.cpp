// Compiles llama.cpp's tools/mtmd/clip.cpp from the module cache (see mtmd.go).
#include "../tools/mtmd/clip.cpp"
