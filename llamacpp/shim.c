#include "shim.h"

#include <stdio.h>

#include "llama.h"

static volatile int lldiff_verbose = 0;

static void lldiff_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void) level;
    (void) user_data;
    if (lldiff_verbose) {
        fputs(text, stderr);
    }
}

void lldiff_log_install(void) { llama_log_set(lldiff_log, NULL); }

void lldiff_log_verbose(int on) { lldiff_verbose = on; }
