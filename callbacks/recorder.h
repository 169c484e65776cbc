// The activation recorder behind llama.cpp's eval callback (cb_eval).
//
// The scheduler calls lldiff_recorder_eval twice for every node it wants to
// show: once with ask=true ("do you want this node?") and, for the nodes the
// answer was yes, once with ask=false after the node is computed. The
// selection is decided here in C so that the thousands of nodes nobody asked
// for cost one string scan each and no cgo call.
#ifndef LLDIFF_RECORDER_H
#define LLDIFF_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ggml.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LLDIFF_NAME_MAX 64

typedef struct lldiff_slot {
    // what to match
    char name[LLDIFF_NAME_MAX];   // full node name: "l_out-3", "result_norm"; "" for unnamed ("node_N")
    int op;                       // ggml_op, or -1 for any
    char src[LLDIFF_NAME_MAX];    // a tensor name that must be a source, or ""
    char notsrc[LLDIFF_NAME_MAX]; // a node name that must not be a source, or ""
    char via[LLDIFF_NAME_MAX];    // a tensor name that a source must read (directly or as GET_ROWS of a reader), or ""
    int viaop;                    // ggml_op of the node that reads via, or -1 for any
    int layer;                    // layer parsed from name, -1 if none

    // recorded rows, appended across ubatches
    float *data;
    size_t n;   // floats recorded
    size_t cap; // floats allocated
    int64_t ne0;
    int calls;

    // patching: when patch is set, the rows of each call starting at
    // patch_row (counted across calls) are overwritten where patch_mask is 1
    const float *patch;
    const uint8_t *patch_mask;
    int64_t patch_rows;
    int64_t patch_row; // rows seen so far
    int patched;       // rows written
} lldiff_slot;

typedef struct lldiff_recorder {
    lldiff_slot *slots;
    int n_slots;
    // slots bucketed by layer (index layer+1) for the hot path
    int n_buckets;
    int *bucket_start;
    int *bucket_len;
    int *order; // slot indices sorted by bucket

    bool record; // copy data (false: only patch)
    // keep, when set, limits what is copied to some rows: call k of a slot
    // (its node in the k-th ubatch) covers the tokens [ub_start[k],
    // ub_start[k+1]) of keep. A node with one row per token copies the rows
    // whose keep is 1; a node computed for the outputs only (as many rows as
    // ones in the window: llama.cpp's last layer) copies all of its rows.
    // Either way the slot holds one row per kept token, in order. The
    // arrays belong to the caller and must outlive the decode.
    const uint8_t *keep;
    const int64_t *ub_start;
    int n_ub;
    int error;
    char errmsg[256];

    // counters for tests and benchmarks
    int64_t n_ask;
    int64_t n_yes;
    void *last_tensor;
    int last_slot;
} lldiff_recorder;

lldiff_recorder *lldiff_recorder_new(void);
void lldiff_recorder_free(lldiff_recorder *r);
// lldiff_recorder_select replaces the selection. names, ops, srcs, notsrcs,
// vias and viaops have n entries; names are full node names, "" for a node
// llama.cpp leaves unnamed (ggml then calls it "node_N" after its place in
// the graph); ops holds ggml op names ("ADD") or "" for any; srcs and
// notsrcs hold full names of a tensor that must (srcs) or must not
// (notsrcs) be a direct source, or ""; vias hold the full name of a tensor
// that a direct source must read directly, or that the source of a
// GET_ROWS direct source must read (a source of a source), or "", and
// viaops the op of the node that reads it, or "" for any. It returns 0, or
// -1 with errmsg set.
int lldiff_recorder_select(lldiff_recorder *r, int n, const char **names, const char **ops, const char **srcs,
                           const char **notsrcs, const char **vias, const char **viaops);
// lldiff_recorder_reset drops recorded rows but keeps the selection and the
// allocated buffers.
void lldiff_recorder_reset(lldiff_recorder *r);
int lldiff_recorder_reserve(lldiff_recorder *r, int slot, size_t nfloats);
// lldiff_recorder_keep sets (or with keep NULL clears) the rows to copy; see
// lldiff_recorder.keep.
void lldiff_recorder_keep(lldiff_recorder *r, const uint8_t *keep, const int64_t *ub_start, int n_ub);
bool lldiff_recorder_eval(struct ggml_tensor *t, bool ask, void *user_data);
// lldiff_recorder_match_node returns the slot node t would be recorded in,
// or -1 (for tests of the matcher, which build t with lldiff_fake_node).
int lldiff_recorder_match_node(lldiff_recorder *r, const struct ggml_tensor *t);
// lldiff_fake_node zeroes t and gives it a name and an op (a ggml op name,
// "" for GGML_OP_NONE); the caller sets its sources. It returns 0, or -1 for
// an unknown op name.
int lldiff_fake_node(struct ggml_tensor *t, const char *name, const char *op);
// lldiff_name_split splits "base-L" into its layer (returned) and the length
// of base; a name without a numeric suffix gives -1 and its full length.
int lldiff_name_split(const char *name, size_t *base_len);

#ifdef __cplusplus
}
#endif

#endif
