# An independent float64 forward pass of a tiny llama model whose weights are a
# formula, written in plain Python from the llama/llama.cpp definitions. It
# produced the expected values in TestHandModel (hand_test.go); run it with
# `python3 testdata/handmodel.py` and paste its output there if the model
# changes. It shares nothing with reference.go but the weight formula.
import math

N_LAYER, D_MODEL, N_HEAD, N_HEAD_KV, D_HEAD, D_FF, N_VOCAB = 2, 6, 4, 2, 4, 5, 7
BASE, EPS = 10000.0, 1e-5
TOKENS = [1, 5, 2, 6]

def val(k, i, j):            # weight element (row i, column j) of tensor k
    return ((k * 31 + i * 7 + j * 3) % 13 - 6) / 8

def mat(k, rows, cols):      # rows x cols; y = W x
    return [[val(k, i, j) for j in range(cols)] for i in range(rows)]

def gamma(k, n):
    return [1 + ((k * 5 + i) % 5 - 2) / 10 for i in range(n)]

def mv(W, x):
    return [sum(w * v for w, v in zip(row, x)) for row in W]

def rmsnorm(x, g):
    r = math.sqrt(sum(v * v for v in x) / len(x) + EPS)
    return [v / r * gi for v, gi in zip(x, g)]

def rope(x, pos):            # llama: rotate adjacent pairs within each head
    out = list(x)
    for h in range(len(x) // D_HEAD):
        for i in range(D_HEAD // 2):
            th = pos * BASE ** (-2 * i / D_HEAD)
            a, b = x[h * D_HEAD + 2 * i], x[h * D_HEAD + 2 * i + 1]
            out[h * D_HEAD + 2 * i] = a * math.cos(th) - b * math.sin(th)
            out[h * D_HEAD + 2 * i + 1] = a * math.sin(th) + b * math.cos(th)
    return out

emb = mat(0, N_VOCAB, D_MODEL)
x = [list(emb[t]) for t in TOKENS]
hooks = {}
for l in range(N_LAYER):
    b = 1 + 10 * l
    hooks[f"blocks.{l}.hook_resid_pre"] = x
    hn = [rmsnorm(v, gamma(b, D_MODEL)) for v in x]
    q = [rope(mv(mat(b + 1, N_HEAD * D_HEAD, D_MODEL), v), p) for p, v in enumerate(hn)]
    k = [rope(mv(mat(b + 2, N_HEAD_KV * D_HEAD, D_MODEL), v), p) for p, v in enumerate(hn)]
    vv = [mv(mat(b + 3, N_HEAD_KV * D_HEAD, D_MODEL), v) for v in hn]
    z = []
    for p in range(len(x)):
        zp = []
        for h in range(N_HEAD):
            g = h // (N_HEAD // N_HEAD_KV)
            qh = q[p][h * D_HEAD:(h + 1) * D_HEAD]
            s = [sum(a * c for a, c in zip(qh, k[t][g * D_HEAD:(g + 1) * D_HEAD])) / math.sqrt(D_HEAD) for t in range(p + 1)]
            e = [math.exp(v - max(s)) for v in s]
            w = [v / sum(e) for v in e]
            zp += [sum(w[t] * vv[t][g * D_HEAD + i] for t in range(p + 1)) for i in range(D_HEAD)]
        z.append(zp)
    attn = [mv(mat(b + 4, D_MODEL, N_HEAD * D_HEAD), v) for v in z]
    mid = [[a + c for a, c in zip(u, v)] for u, v in zip(x, attn)]
    mlp = []
    for v in mid:
        hn2 = rmsnorm(v, gamma(b + 5, D_MODEL))
        gt = mv(mat(b + 6, D_FF, D_MODEL), hn2)
        up = mv(mat(b + 7, D_FF, D_MODEL), hn2)
        mlp.append(mv(mat(b + 8, D_MODEL, D_FF), [a / (1 + math.exp(-a)) * c for a, c in zip(gt, up)]))
    post = [[a + c for a, c in zip(u, v)] for u, v in zip(mid, mlp)]
    hooks[f"blocks.{l}.attn.hook_z"] = z
    hooks[f"blocks.{l}.hook_attn_out"] = attn
    hooks[f"blocks.{l}.hook_mlp_out"] = mlp
    hooks[f"blocks.{l}.hook_resid_post"] = post
    x = post
fin = [rmsnorm(v, gamma(50, D_MODEL)) for v in x]
hooks["ln_final.hook_normalized"] = fin
hooks["logits"] = [mv(mat(51, N_VOCAB, D_MODEL), v) for v in fin]

for name in ["blocks.0.attn.hook_z", "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out", "logits"]:
    print(f'\t"{name}": {{')
    for row in hooks[name]:
        print("\t\t{" + ", ".join(f"{v:.9g}" for v in row) + "},")
    print("\t},")
