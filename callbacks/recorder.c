#include "recorder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"

lldiff_recorder *lldiff_recorder_new(void) {
    lldiff_recorder *r = calloc(1, sizeof(*r));
    if (r) {
        r->record = true;
        r->last_slot = -1;
    }
    return r;
}

static void free_selection(lldiff_recorder *r) {
    for (int i = 0; i < r->n_slots; i++) {
        free(r->slots[i].data);
    }
    free(r->slots);
    free(r->bucket_start);
    free(r->bucket_len);
    free(r->order);
    r->slots = NULL;
    r->bucket_start = r->bucket_len = r->order = NULL;
    r->n_slots = r->n_buckets = 0;
}

void lldiff_recorder_free(lldiff_recorder *r) {
    if (!r) {
        return;
    }
    free_selection(r);
    free(r);
}

int lldiff_name_split(const char *name, size_t *base_len) {
    size_t n = strlen(name);
    size_t i = n;
    while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') {
        i--;
    }
    if (i == n || i < 2 || name[i - 1] != '-' || n - i > 6) {
        *base_len = n;
        return -1;
    }
    *base_len = i - 1;
    return atoi(name + i);
}

static int op_from_name(const char *s) {
    if (!s || !*s) {
        return -1;
    }
    for (int op = 0; op < GGML_OP_COUNT; op++) {
        if (strcmp(ggml_op_name((enum ggml_op) op), s) == 0) {
            return op;
        }
    }
    return -2;
}

int lldiff_recorder_select(lldiff_recorder *r, int n, const char **names, const char **ops, const char **srcs,
                           const char **notsrcs, const char **vias, const char **viaops) {
    free_selection(r);
    r->error = 0;
    r->errmsg[0] = 0;
    if (n == 0) {
        return 0;
    }
    r->slots = calloc((size_t) n, sizeof(lldiff_slot));
    if (!r->slots) {
        snprintf(r->errmsg, sizeof(r->errmsg), "out of memory");
        return -1;
    }
    r->n_slots = n;
    int max_layer = -1;
    for (int i = 0; i < n; i++) {
        lldiff_slot *s = &r->slots[i];
        if (strlen(names[i]) >= LLDIFF_NAME_MAX || strlen(srcs[i]) >= LLDIFF_NAME_MAX ||
            strlen(notsrcs[i]) >= LLDIFF_NAME_MAX || strlen(vias[i]) >= LLDIFF_NAME_MAX) {
            snprintf(r->errmsg, sizeof(r->errmsg), "node name too long: %s", names[i]);
            free_selection(r);
            return -1;
        }
        if (!names[i][0] && !srcs[i][0] && !vias[i][0]) {
            snprintf(r->errmsg, sizeof(r->errmsg), "an unnamed node needs a source (or a source's source) to be told apart");
            free_selection(r);
            return -1;
        }
        if (viaops[i][0] && !vias[i][0]) {
            snprintf(r->errmsg, sizeof(r->errmsg), "the op %s of a source's source is set without the tensor it reads",
                     viaops[i]);
            free_selection(r);
            return -1;
        }
        strcpy(s->name, names[i]);
        strcpy(s->src, srcs[i]);
        strcpy(s->notsrc, notsrcs[i]);
        strcpy(s->via, vias[i]);
        s->op = op_from_name(ops[i]);
        s->viaop = op_from_name(viaops[i]);
        if (s->op == -2 || s->viaop == -2) {
            snprintf(r->errmsg, sizeof(r->errmsg), "unknown ggml op %s", s->op == -2 ? ops[i] : viaops[i]);
            free_selection(r);
            return -1;
        }
        size_t bl;
        s->layer = lldiff_name_split(s->name, &bl);
        if (s->layer > max_layer) {
            max_layer = s->layer;
        }
    }
    r->n_buckets = max_layer + 2;
    r->bucket_start = calloc((size_t) r->n_buckets, sizeof(int));
    r->bucket_len = calloc((size_t) r->n_buckets, sizeof(int));
    r->order = calloc((size_t) n, sizeof(int));
    if (!r->bucket_start || !r->bucket_len || !r->order) {
        snprintf(r->errmsg, sizeof(r->errmsg), "out of memory");
        free_selection(r);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        r->bucket_len[r->slots[i].layer + 1]++;
    }
    int pos = 0;
    for (int b = 0; b < r->n_buckets; b++) {
        r->bucket_start[b] = pos;
        pos += r->bucket_len[b];
        r->bucket_len[b] = 0;
    }
    for (int i = 0; i < n; i++) {
        int b = r->slots[i].layer + 1;
        r->order[r->bucket_start[b] + r->bucket_len[b]++] = i;
    }
    return 0;
}

void lldiff_recorder_reset(lldiff_recorder *r) {
    for (int i = 0; i < r->n_slots; i++) {
        lldiff_slot *s = &r->slots[i];
        s->n = 0;
        s->ne0 = 0;
        s->calls = 0;
        s->patch_row = 0;
        s->patched = 0;
    }
    r->error = 0;
    r->errmsg[0] = 0;
    r->n_ask = r->n_yes = 0;
    r->last_tensor = NULL;
    r->last_slot = -1;
}

int lldiff_recorder_reserve(lldiff_recorder *r, int slot, size_t nfloats) {
    lldiff_slot *s = &r->slots[slot];
    if (nfloats <= s->cap) {
        return 0;
    }
    float *p = realloc(s->data, nfloats * sizeof(float));
    if (!p) {
        return -1;
    }
    s->data = p;
    s->cap = nfloats;
    return 0;
}

static bool has_src(const struct ggml_tensor *t, const char *name) {
    for (int i = 0; i < GGML_MAX_SRC; i++) {
        if (t->src[i] && strcmp(t->src[i]->name, name) == 0) {
            return true;
        }
    }
    return false;
}

// reads reports whether t is computed by op (any when op < 0) and reads
// the tensor named name directly.
static bool reads(const struct ggml_tensor *t, int op, const char *name) {
    return t && (op < 0 || (int) t->op == op) && has_src(t, name);
}

// has_src_via reports whether a direct source of t reads the tensor named
// name with op viaop (reads), or is a GET_ROWS row selection of a node that
// does: llama.cpp selects the rows kept for output (inp_out_ids) of the
// last layer's nodes with GET_ROWS before adding them.
static bool has_src_via(const struct ggml_tensor *t, int viaop, const char *name) {
    for (int i = 0; i < GGML_MAX_SRC; i++) {
        const struct ggml_tensor *s = t->src[i];
        if (!s) {
            continue;
        }
        if (reads(s, viaop, name)) {
            return true;
        }
        if (s->op == GGML_OP_GET_ROWS && reads(s->src[0], viaop, name)) {
            return true;
        }
    }
    return false;
}

// unnamed reports whether name is one ggml gives a node nobody named:
// "node_N", N its index in the graph (ggml_visit_parents), which changes
// with the graph; or "" before the graph is built.
static bool unnamed(const char *name) {
    if (!name[0]) {
        return true;
    }
    if (strncmp(name, "node_", 5) != 0 || !name[5]) {
        return false;
    }
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

static int match(lldiff_recorder *r, const struct ggml_tensor *t) {
    size_t bl;
    int layer = lldiff_name_split(t->name, &bl);
    if (layer + 1 >= r->n_buckets) {
        return -1;
    }
    int b = layer + 1;
    for (int k = 0; k < r->bucket_len[b]; k++) {
        int i = r->order[r->bucket_start[b] + k];
        lldiff_slot *s = &r->slots[i];
        if (s->name[0] ? strcmp(s->name, t->name) != 0 : !unnamed(t->name)) {
            continue;
        }
        if (s->op >= 0 && (int) t->op != s->op) {
            continue;
        }
        if (s->src[0] && !has_src(t, s->src)) {
            continue;
        }
        if (s->notsrc[0] && has_src(t, s->notsrc)) {
            continue;
        }
        if (s->via[0] && !has_src_via(t, s->viaop, s->via)) {
            continue;
        }
        return i;
    }
    return -1;
}

int lldiff_recorder_match_node(lldiff_recorder *r, const struct ggml_tensor *t) { return match(r, t); }

int lldiff_fake_node(struct ggml_tensor *t, const char *name, const char *op) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    int o = op_from_name(op);
    if (o == -2) {
        return -1;
    }
    t->op = o >= 0 ? (enum ggml_op) o : GGML_OP_NONE;
    return 0;
}

void lldiff_recorder_keep(lldiff_recorder *r, const uint8_t *keep, const int64_t *ub_start, int n_ub) {
    r->keep = keep;
    r->ub_start = keep ? ub_start : NULL;
    r->n_ub = keep ? n_ub : 0;
}

static bool grow(lldiff_recorder *r, lldiff_slot *s, size_t nf) {
    if (s->n + nf <= s->cap) {
        return true;
    }
    size_t c = s->cap ? s->cap : 1024;
    while (c < s->n + nf) {
        c *= 2;
    }
    return lldiff_recorder_reserve(r, (int) (s - r->slots), c) == 0;
}

static bool fail(lldiff_recorder *r, const char *msg, const struct ggml_tensor *t) {
    if (!r->error) {
        r->error = 1;
        snprintf(r->errmsg, sizeof(r->errmsg), "%s: node %s (%s, type %s)", msg, t->name, ggml_op_name(t->op),
                 ggml_type_name(t->type));
    }
    return false;
}

static bool record(lldiff_recorder *r, lldiff_slot *s, struct ggml_tensor *t) {
    if (t->type != GGML_TYPE_F32) {
        return fail(r, "captured node is not float32", t);
    }
    if (t->nb[0] != sizeof(float)) {
        return fail(r, "captured node has non-contiguous rows", t);
    }
    if (s->calls > 0 && s->ne0 != t->ne[0]) {
        return fail(r, "captured node changed width between ubatches", t);
    }
    s->ne0 = t->ne[0];
    s->calls++;
    const int64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t nf = (size_t) (t->ne[0] * nrows);
    bool copied = false;
    if (r->record && r->keep && t->ne[2] == 1 && t->ne[3] == 1) {
        // one row per token: copy the kept ones
        int k = s->calls - 1;
        if (k >= r->n_ub) {
            return fail(r, "captured node ran in more ubatches than the batch was split into", t);
        }
        const int64_t u0 = r->ub_start[k], u1 = r->ub_start[k + 1];
        int64_t kept = 0;
        for (int64_t i = u0; i < u1; i++) {
            kept += r->keep[i] != 0;
        }
        if (nrows == u1 - u0 && kept < nrows) {
            if (!grow(r, s, (size_t) (kept * t->ne[0]))) {
                return fail(r, "out of memory while recording", t);
            }
            for (int64_t row = 0; row < nrows; row++) {
                if (r->keep[u0 + row]) {
                    ggml_backend_tensor_get(t, s->data + s->n, (size_t) (row * t->nb[1]), (size_t) t->ne[0] * sizeof(float));
                    s->n += (size_t) t->ne[0];
                }
            }
            copied = true;
        }
        // otherwise every row is copied: a node of the outputs only, or
        // one whose rows are not tokens (the reader checks the count)
    }
    if (r->record && !copied) {
        if (!grow(r, s, nf)) {
            return fail(r, "out of memory while recording", t);
        }
        float *dst = s->data + s->n;
        if (ggml_is_contiguous(t)) {
            ggml_backend_tensor_get(t, dst, 0, nf * sizeof(float));
        } else {
            for (int64_t i3 = 0; i3 < t->ne[3]; i3++) {
                for (int64_t i2 = 0; i2 < t->ne[2]; i2++) {
                    for (int64_t i1 = 0; i1 < t->ne[1]; i1++) {
                        size_t off = (size_t) (i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3]);
                        ggml_backend_tensor_get(t, dst, off, (size_t) t->ne[0] * sizeof(float));
                        dst += t->ne[0];
                    }
                }
            }
        }
        s->n += nf;
    }
    if (s->patch) {
        if (!ggml_is_contiguous(t)) {
            return fail(r, "cannot patch a non-contiguous node", t);
        }
        for (int64_t row = 0; row < nrows; row++) {
            int64_t pr = s->patch_row + row;
            if (pr >= s->patch_rows) {
                break;
            }
            if (s->patch_mask && !s->patch_mask[pr]) {
                continue;
            }
            ggml_backend_tensor_set(t, s->patch + pr * t->ne[0], (size_t) (row * t->ne[0]) * sizeof(float),
                                    (size_t) t->ne[0] * sizeof(float));
            s->patched++;
        }
    }
    s->patch_row += nrows;
    return true;
}

bool lldiff_recorder_eval(struct ggml_tensor *t, bool ask, void *user_data) {
    lldiff_recorder *r = (lldiff_recorder *) user_data;
    if (ask) {
        if (r->n_slots == 0) {
            return false;
        }
        r->n_ask++;
        int i = match(r, t);
        if (i < 0) {
            return false;
        }
        r->n_yes++;
        r->last_tensor = t;
        r->last_slot = i;
        return true;
    }
    int i = (r->last_tensor == (void *) t) ? r->last_slot : match(r, t);
    if (i < 0) {
        return true;
    }
    if (r->error) {
        return false;
    }
    return record(r, &r->slots[i], t);
}
