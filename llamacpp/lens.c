#include "lens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

// ggml's CPU tensors must start at multiples of this (TENSOR_ALIGNMENT).
#define LENS_ALIGN 32
// nodes of the largest graph: x, norm, mul, add, mul_mat, add (and γ, β,
// W_U, bias leaves)
#define LENS_GRAPH_NODES 16

struct lldiff_lens {
    ggml_backend_t backend;
    int is_cpu;
    // the CPU backend's workers, kept between lenses (without a pool ggml
    // starts and joins its threads for every graph)
    struct ggml_threadpool *tp;
    int64_t d, n_vocab;
    float eps;
    int layer_norm;  // the final norm is a LayerNorm with bias β (else RMSNorm)
    int chunk;

    struct ggml_context *wctx;  // γ, β, W_U and the output bias
    struct ggml_tensor *gamma, *beta, *w, *bias;  // beta and bias may be NULL
    ggml_backend_buffer_t wbuf;  // allocated weights (γ, β, bias, and W_U unless mapped)
    ggml_backend_buffer_t mbuf;  // W_U mapped from the file
    void *map;
    size_t map_len;

    ggml_gallocr_t galloc;
    void *meta;  // memory for the graph's tensor and node structs
    size_t meta_size;
};

// lens_cpu_can_mul_mat reports whether ggml's CPU backend has a dot product
// for W_U's type (its supports_op answers yes for any type when x is F32).
static int lens_cpu_can_mul_mat(int type) { return ggml_get_type_traits_cpu((enum ggml_type) type)->vec_dot != NULL; }

// lens_graph builds the graph for n rows in mode in l->meta. The context is
// freed by the caller after computing.
static struct ggml_cgraph *lens_graph(lldiff_lens *l, int64_t n, int mode, struct ggml_context **ctx,
                                      struct ggml_tensor **x, struct ggml_tensor **out) {
    struct ggml_init_params ip = {l->meta_size, l->meta, true};
    *ctx = ggml_init(ip);
    if (*ctx == NULL) {
        return NULL;
    }
    *x = ggml_new_tensor_2d(*ctx, GGML_TYPE_F32, l->d, n);
    ggml_set_name(*x, "lens_x");
    ggml_set_input(*x);
    struct ggml_tensor *h = *x;
    if (mode == LLDIFF_LENS_NORM) {
        h = l->layer_norm ? ggml_norm(*ctx, h, l->eps) : ggml_rms_norm(*ctx, h, l->eps);
    }
    if (mode == LLDIFF_LENS_NORM || mode == LLDIFF_LENS_GAMMA) {
        h = ggml_mul(*ctx, h, l->gamma);
    }
    if (mode == LLDIFF_LENS_NORM && l->beta != NULL) {
        h = ggml_add(*ctx, h, l->beta);
    }
    *out = ggml_mul_mat(*ctx, l->w, h);
    if (mode == LLDIFF_LENS_NORM && l->bias != NULL) {
        *out = ggml_add(*ctx, *out, l->bias);
    }
    ggml_set_name(*out, "lens_logits");
    ggml_set_output(*out);
    struct ggml_cgraph *gf = ggml_new_graph_custom(*ctx, LENS_GRAPH_NODES, false);
    ggml_build_forward_expand(gf, *out);
    return gf;
}

// lens_backend_supports reports whether backend can compute every node of
// the norm-mode graph.
static int lens_backend_supports(lldiff_lens *l, ggml_backend_t backend) {
    struct ggml_context *ctx;
    struct ggml_tensor *x, *out;
    struct ggml_cgraph *gf = lens_graph(l, 1, LLDIFF_LENS_NORM, &ctx, &x, &out);
    if (gf == NULL) {
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        ok = ok && ggml_backend_supports_op(backend, ggml_graph_node(gf, i));
    }
    ggml_free(ctx);
    return ok;
}

lldiff_lens *lldiff_lens_new(int64_t d, int64_t n_vocab, int w_type, float eps, int layer_norm, int out_bias,
                             int gpu, int threads, int chunk, char *err, size_t errlen) {
    if (w_type < 0 || w_type >= GGML_TYPE_COUNT || ggml_blck_size((enum ggml_type) w_type) == 0) {
        snprintf(err, errlen, "ggml has no type %d", w_type);
        return NULL;
    }
    if (d <= 0 || n_vocab <= 0 || chunk <= 0 || d % ggml_blck_size((enum ggml_type) w_type) != 0) {
        snprintf(err, errlen, "bad shape: d_model %lld, n_vocab %lld, chunk %d for type %s", (long long) d,
                 (long long) n_vocab, chunk, ggml_type_name((enum ggml_type) w_type));
        return NULL;
    }
    lldiff_lens *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->d = d;
    l->n_vocab = n_vocab;
    l->eps = eps;
    l->layer_norm = layer_norm;
    l->chunk = chunk;
    l->meta_size = ggml_tensor_overhead() * LENS_GRAPH_NODES + ggml_graph_overhead_custom(LENS_GRAPH_NODES, false);
    l->meta = malloc(l->meta_size);
    struct ggml_init_params ip = {4 * ggml_tensor_overhead(), NULL, true};
    l->wctx = ggml_init(ip);
    if (l->meta == NULL || l->wctx == NULL) {
        snprintf(err, errlen, "out of memory");
        lldiff_lens_free(l);
        return NULL;
    }
    l->gamma = ggml_new_tensor_1d(l->wctx, GGML_TYPE_F32, d);
    ggml_set_name(l->gamma, "output_norm.weight");
    l->w = ggml_new_tensor_2d(l->wctx, (enum ggml_type) w_type, d, n_vocab);
    ggml_set_name(l->w, "lens_unembed");
    if (layer_norm) {
        l->beta = ggml_new_tensor_1d(l->wctx, GGML_TYPE_F32, d);
        ggml_set_name(l->beta, "output_norm.bias");
    }
    if (out_bias) {
        l->bias = ggml_new_tensor_1d(l->wctx, GGML_TYPE_F32, n_vocab);
        ggml_set_name(l->bias, "output.bias");
    }

    if (gpu) {
        ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
        if (dev == NULL) {
            dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_IGPU);
        }
        if (dev != NULL) {
            l->backend = ggml_backend_dev_init(dev, NULL);
        }
        if (l->backend != NULL && !lens_backend_supports(l, l->backend)) {
            // e.g. a W_U type without a GPU kernel: the CPU does it
            ggml_backend_free(l->backend);
            l->backend = NULL;
        }
    }
    if (l->backend == NULL) {
        if (!lens_cpu_can_mul_mat(w_type)) {
            snprintf(err, errlen, "ggml's CPU backend cannot multiply by a %s matrix",
                     ggml_type_name((enum ggml_type) w_type));
            lldiff_lens_free(l);
            return NULL;
        }
        l->backend = ggml_backend_cpu_init();
        if (l->backend == NULL) {
            snprintf(err, errlen, "ggml could not start its CPU backend");
            lldiff_lens_free(l);
            return NULL;
        }
        int nt = threads > 0 ? threads : 1;
        ggml_backend_cpu_set_n_threads(l->backend, nt);
        if (nt > 1) {
            struct ggml_threadpool_params tpp = ggml_threadpool_params_default(nt);
            // workers spin about a hundred microseconds, then sleep: an
            // idle lens does not compete with a context's decode
            tpp.poll = 1;
            l->tp = ggml_threadpool_new(&tpp);
            if (l->tp != NULL) {
                ggml_backend_cpu_set_threadpool(l->backend, l->tp);
            }
        }
        l->is_cpu = 1;
        if (!lens_backend_supports(l, l->backend)) {
            snprintf(err, errlen, "ggml's CPU backend cannot compute the lens for a %s matrix",
                     ggml_type_name((enum ggml_type) w_type));
            lldiff_lens_free(l);
            return NULL;
        }
    }
    return l;
}

int lldiff_lens_map(lldiff_lens *l, const char *path, int64_t offset) {
#ifdef _WIN32
    (void) l;
    (void) path;
    (void) offset;
    return 1;
#else
    if (!l->is_cpu || l->map != NULL || offset < 0) {
        return 1;
    }
    size_t size = ggml_nbytes(l->w);
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        return 1;
    }
    int64_t start = offset - offset % page;
    size_t len = (size_t) (offset - start) + size;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 1;
    }
    // every lens reads all of W_U: map its pages in one call rather than
    // fault them in one by one on the first lens (5 ms less for 36 MB on
    // bench-cpu; a page fault costs about 11 µs on a nested VM)
    int flags = MAP_SHARED;
#ifdef MAP_POPULATE
    flags |= MAP_POPULATE;
#endif
    void *p = mmap(NULL, len, PROT_READ, flags, fd, (off_t) start);
    close(fd);
    if (p == MAP_FAILED) {
        return 1;
    }
    char *addr = (char *) p + (offset - start);
    if ((uintptr_t) addr % LENS_ALIGN != 0) {
        munmap(p, len);
        return 1;
    }
    l->mbuf = ggml_backend_cpu_buffer_from_ptr(p, len);
    if (l->mbuf == NULL || ggml_backend_tensor_alloc(l->mbuf, l->w, addr) != GGML_STATUS_SUCCESS) {
        if (l->mbuf != NULL) {
            ggml_backend_buffer_free(l->mbuf);
            l->mbuf = NULL;
        }
        l->w->buffer = NULL;
        l->w->data = NULL;
        munmap(p, len);
        return 1;
    }
    ggml_backend_buffer_set_usage(l->mbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    l->map = p;
    l->map_len = len;
    return 0;
#endif
}

int lldiff_lens_alloc(lldiff_lens *l, char *err, size_t errlen) {
    size_t need = ggml_nbytes(l->gamma) + (l->beta ? ggml_nbytes(l->beta) : 0) + (l->bias ? ggml_nbytes(l->bias) : 0) +
                  (l->mbuf == NULL ? ggml_nbytes(l->w) : 0);
    l->wbuf = ggml_backend_alloc_ctx_tensors(l->wctx, l->backend);
    if (l->wbuf == NULL) {
        snprintf(err, errlen, "could not allocate %zu bytes for the unembedding on %s", need,
                 ggml_backend_name(l->backend));
        return -1;
    }
    ggml_backend_buffer_set_usage(l->wbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    l->galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(l->backend));
    struct ggml_context *ctx;
    struct ggml_tensor *x, *out;
    struct ggml_cgraph *gf = lens_graph(l, l->chunk, LLDIFF_LENS_NORM, &ctx, &x, &out);
    int ok = l->galloc != NULL && gf != NULL && ggml_gallocr_reserve(l->galloc, gf);
    if (ctx != NULL) {
        ggml_free(ctx);
    }
    if (!ok) {
        snprintf(err, errlen, "could not allocate the lens's compute buffer for %d rows of %lld logits on %s",
                 l->chunk, (long long) l->n_vocab, ggml_backend_name(l->backend));
        return -1;
    }
    return 0;
}

void lldiff_lens_set_gamma(lldiff_lens *l, const float *gamma) {
    ggml_backend_tensor_set(l->gamma, gamma, 0, ggml_nbytes(l->gamma));
}

void lldiff_lens_set_beta(lldiff_lens *l, const float *beta) {
    if (l->beta != NULL) {
        ggml_backend_tensor_set(l->beta, beta, 0, ggml_nbytes(l->beta));
    }
}

void lldiff_lens_set_bias(lldiff_lens *l, const float *bias) {
    if (l->bias != NULL) {
        ggml_backend_tensor_set(l->bias, bias, 0, ggml_nbytes(l->bias));
    }
}

void lldiff_lens_set_w(lldiff_lens *l, const void *data, size_t off, size_t size) {
    ggml_backend_tensor_set(l->w, data, off, size);
}

int lldiff_lens_unembed(lldiff_lens *l, const float *x, int64_t n, int mode, float *out, char *err,
                        size_t errlen) {
    for (int64_t r0 = 0; r0 < n; r0 += l->chunk) {
        int64_t m = n - r0 < l->chunk ? n - r0 : l->chunk;
        struct ggml_context *ctx;
        struct ggml_tensor *tx, *tout;
        struct ggml_cgraph *gf = lens_graph(l, m, mode, &ctx, &tx, &tout);
        if (gf == NULL) {
            snprintf(err, errlen, "ggml could not build the lens graph");
            return -1;
        }
        // On the CPU the graph reads the caller's rows and writes the
        // caller's logits where they are (tensors whose data is set are
        // left alone by the allocator, and never computed in place): no
        // copy in, no copy of m × n_vocab floats out. ggml's CPU tensors
        // start at multiples of LENS_ALIGN; other addresses are copied.
        const float *xin = x + r0 * l->d;
        float *dst = out + r0 * l->n_vocab;
        int direct_in = l->is_cpu && (uintptr_t) xin % LENS_ALIGN == 0;
        int direct_out = l->is_cpu && (uintptr_t) dst % LENS_ALIGN == 0;
        if (direct_in) {
            tx->data = (void *) xin;
        }
        if (direct_out) {
            tout->data = dst;
        }
        if (!ggml_gallocr_alloc_graph(l->galloc, gf)) {
            ggml_free(ctx);
            snprintf(err, errlen, "ggml could not allocate the lens graph on %s", ggml_backend_name(l->backend));
            return -1;
        }
        if (!direct_in) {
            ggml_backend_tensor_set(tx, xin, 0, ggml_nbytes(tx));
        }
        enum ggml_status st = ggml_backend_graph_compute(l->backend, gf);
        if (st != GGML_STATUS_SUCCESS) {
            ggml_free(ctx);
            snprintf(err, errlen, "ggml failed computing the lens on %s: %s", ggml_backend_name(l->backend),
                     ggml_status_to_string(st));
            return -1;
        }
        if (!direct_out) {
            ggml_backend_tensor_get(tout, dst, 0, ggml_nbytes(tout));
        }
        ggml_free(ctx);
    }
    return 0;
}

const char *lldiff_lens_device(const lldiff_lens *l) { return ggml_backend_name(l->backend); }

int lldiff_lens_mapped(const lldiff_lens *l) { return l->mbuf != NULL; }

size_t lldiff_lens_buffer_bytes(const lldiff_lens *l) {
    size_t n = 0;
    if (l->wbuf != NULL) {
        n += ggml_backend_buffer_get_size(l->wbuf);
    }
    if (l->galloc != NULL) {
        n += ggml_gallocr_get_buffer_size(l->galloc, 0);
    }
    return n;
}

void lldiff_lens_free(lldiff_lens *l) {
    if (l == NULL) {
        return;
    }
    if (l->galloc != NULL) {
        ggml_gallocr_free(l->galloc);
    }
    if (l->wbuf != NULL) {
        ggml_backend_buffer_free(l->wbuf);
    }
    if (l->mbuf != NULL) {
        ggml_backend_buffer_free(l->mbuf);
    }
#ifndef _WIN32
    if (l->map != NULL) {
        munmap(l->map, l->map_len);
    }
#endif
    if (l->wctx != NULL) {
        ggml_free(l->wctx);
    }
    if (l->backend != NULL) {
        ggml_backend_free(l->backend);
    }
    if (l->tp != NULL) {
        ggml_threadpool_free(l->tp);
    }
    free(l->meta);
    free(l);
}

int lldiff_dequantize(int type, const void *src, float *dst, int64_t n) {
    if (type < 0 || type >= GGML_TYPE_COUNT || ggml_blck_size((enum ggml_type) type) == 0) {
        return -1;
    }
    const struct ggml_type_traits *tt = ggml_get_type_traits((enum ggml_type) type);
    if (tt->to_float == NULL || n % tt->blck_size != 0) {
        return -1;
    }
    tt->to_float(src, dst, n);
    return 0;
}
