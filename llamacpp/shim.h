#ifndef LLDIFF_SHIM_H
#define LLDIFF_SHIM_H
#include "ggml.h"
// lldiff_log_install routes llama.cpp's and ggml's log to stderr when verbose
// is set and drops it otherwise.
void lldiff_log_install(void);
void lldiff_log_verbose(int on);
#endif
