// lldiff-anchor: times llama_decode of one prompt of N tokens, as
// llama-bench's "pp" test does (logits of the last token only, the KV cache
// cleared between repetitions, one warm-up run), so that lldiff's own
// decode can be compared with llama.cpp's on the same model and machine.
//
// usage: lldiff-anchor MODEL [N_TOKENS=20] [REPS=5] [THREADS=physical] [KV=f16|f32]
// prints: model, tokens, threads, kv type, median ms and tokens/s.
//
// Environment switches that give the anchor one of lldiff's context
// settings at a time (docs/performance.md, issue 15's fifth round), all off
// by default: ANCHOR_FA=1 flash attention on; ANCHOR_NOMMAP=1 reads the
// model instead of mapping it; ANCHOR_UNIFIED=1 one KV stream for all
// sequences; ANCHOR_POOL=N attaches a persistent ggml thread pool with poll
// level N (lldiff uses 1); ANCHOR_ABORT=1 sets an abort callback that reads
// a flag, as a cancellable lldiff context does.
#include "ggml-cpu.h"
#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

static void quiet(enum ggml_log_level, const char *, void *) {}

static int abort_flag = 0;

static bool aborted(void * flag) { return __atomic_load_n((int *) flag, __ATOMIC_RELAXED) != 0; }

int main(int argc, char ** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [N_TOKENS] [REPS] [THREADS] [f16|f32]\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 20;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    int threads = argc > 4 ? atoi(argv[4]) : (int) std::thread::hardware_concurrency();
    bool f32 = argc > 5 && strcmp(argv[5], "f32") == 0;
    if (n < 1 || reps < 1 || threads < 1) {
        fprintf(stderr, "N_TOKENS, REPS and THREADS must be positive\n");
        return 2;
    }
    if (!getenv("ANCHOR_VERBOSE")) {
        llama_log_set(quiet, nullptr);
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    if (getenv("ANCHOR_NOMMAP")) {
        mp.use_mmap = false;
    }
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 256 > n ? 256 : n;
    cp.n_batch = cp.n_ctx;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    // lldiff computes attention without flash attention (its captures
    // read the attention pattern), and so does llama-bench unless -fa 1:
    // the anchor measures the same computation
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (getenv("ANCHOR_FA")) {
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    }
    if (f32) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
    }
    if (getenv("ANCHOR_UNIFIED")) {
        cp.kv_unified = true;
    }
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    ggml_threadpool * pool = nullptr;
    if (const char * poll = getenv("ANCHOR_POOL")) {
        ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
        tpp.poll = (uint32_t) atoi(poll);
        pool = ggml_threadpool_new(&tpp);
        if (!pool) {
            fprintf(stderr, "cannot create a thread pool\n");
            return 1;
        }
        llama_attach_threadpool(ctx, pool, pool);
    }
    if (getenv("ANCHOR_ABORT")) {
        llama_set_abort_callback(ctx, aborted, &abort_flag);
    }
    // The same token ids as lldiff's benchmarks (llamacpp.benchTokens).
    std::vector<llama_token> toks = {1};
    unsigned x = 7;
    while ((int) toks.size() < n) {
        x = x * 1664525u + 1013904223u;
        toks.push_back((llama_token) (100 + (x >> 8) % 20000));
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    for (auto & t : toks) {
        t %= llama_vocab_n_tokens(vocab);
    }
    std::vector<double> times;
    for (int r = -1; r < reps; r++) {
        llama_memory_clear(llama_get_memory(ctx), true);
        auto t0 = std::chrono::steady_clock::now();
        if (llama_decode(ctx, llama_batch_get_one(toks.data(), (int) toks.size())) != 0) {
            fprintf(stderr, "llama_decode failed\n");
            return 1;
        }
        llama_synchronize(ctx);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (r >= 0) {
            times.push_back(ms);
        }
    }
    // the median repetition, as lldiff's BenchmarkDecodeTypes reports: a
    // burst of other load in one repetition does not move it
    std::sort(times.begin(), times.end());
    double med = reps % 2 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
    printf("%s\tpp%d\tthreads %d\tkv %s\t%.1f ms\t%.1f tokens/s\n", path, n, threads, f32 ? "f32" : "f16", med, n * 1000.0 / med);
    llama_free(ctx);
    if (pool) {
        ggml_threadpool_free(pool);
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
