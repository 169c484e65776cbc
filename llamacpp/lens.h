#ifndef LLDIFF_LENS_H
#define LLDIFF_LENS_H
// The logit lens in ggml: γ and W_U in a backend (mapped from the model file
// on the CPU, uploaded otherwise) and a small graph
//   x [d, n] → rms_norm(eps) → mul γ → mul_mat(W_U) → [n_vocab, n]
// or, for a final LayerNorm (gpt2, gptneox),
//   x [d, n] → norm(eps) → mul γ → add β → mul_mat(W_U) (→ add output bias)
// computed a chunk of rows at a time.
#include <stddef.h>
#include <stdint.h>

// Modes, the values of lens.Mode.
enum { LLDIFF_LENS_NORM = 0, LLDIFF_LENS_GAMMA = 1, LLDIFF_LENS_RAW = 2 };

typedef struct lldiff_lens lldiff_lens;

// lldiff_lens_new creates the backend and the (unallocated) tensors γ [d]
// F32 and W_U [d, n_vocab] of ggml type w_type; with layer_norm set the
// final norm is a LayerNorm and β [d] F32 is created too, with out_bias an
// output bias [n_vocab] F32 added to the logits. With gpu set it takes the
// first GPU (or integrated GPU) device when one is loaded and supports the
// graph, and the CPU with threads otherwise. chunk is the most rows one
// graph computes. On failure it returns NULL with a message in err.
lldiff_lens *lldiff_lens_new(int64_t d, int64_t n_vocab, int w_type, float eps, int layer_norm, int out_bias,
                             int gpu, int threads, int chunk, char *err, size_t errlen);

// lldiff_lens_map maps W_U read-only from the bytes at offset of the file at
// path, without copying (CPU backend only). It returns 0 when mapped, and 1
// when W_U must be uploaded instead (GPU backend, no mmap, a failed map or
// an unaligned offset).
int lldiff_lens_map(lldiff_lens *l, const char *path, int64_t offset);

// lldiff_lens_alloc allocates the tensors not mapped in a backend buffer
// and reserves the compute buffer. It returns 0, or -1 with a message.
int lldiff_lens_alloc(lldiff_lens *l, char *err, size_t errlen);

// lldiff_lens_set_gamma uploads γ (d floats), lldiff_lens_set_beta β (d
// floats) and lldiff_lens_set_bias the output bias (n_vocab floats) when the
// lens has them; lldiff_lens_set_w uploads size bytes of W_U at byte offset
// off (only when not mapped).
void lldiff_lens_set_gamma(lldiff_lens *l, const float *gamma);
void lldiff_lens_set_beta(lldiff_lens *l, const float *beta);
void lldiff_lens_set_bias(lldiff_lens *l, const float *bias);
void lldiff_lens_set_w(lldiff_lens *l, const void *data, size_t off, size_t size);

// lldiff_lens_unembed writes the lens of the n rows of x (n × d) to out
// (n × n_vocab). It returns 0, or -1 with a message.
int lldiff_lens_unembed(lldiff_lens *l, const float *x, int64_t n, int mode, float *out, char *err,
                        size_t errlen);

// lldiff_lens_device returns the backend's name ("CPU", "CUDA0", ...).
const char *lldiff_lens_device(const lldiff_lens *l);
// lldiff_lens_mapped reports whether W_U is mapped from the file.
int lldiff_lens_mapped(const lldiff_lens *l);
// lldiff_lens_buffer_bytes returns the bytes the lens allocated: weights
// not mapped plus the compute buffer.
size_t lldiff_lens_buffer_bytes(const lldiff_lens *l);

void lldiff_lens_free(lldiff_lens *l);

// lldiff_dequantize decodes n elements of ggml type type with ggml's own
// decoder; it returns -1 for types ggml cannot decode.
int lldiff_dequantize(int type, const void *src, float *dst, int64_t n);

#endif
