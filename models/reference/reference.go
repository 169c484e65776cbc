// Package reference is a plain Go forward pass of the llama architecture, the
// definition that lldiff's captured activations are checked against. qwen2
// (Qwen2, Qwen2.5) is llama with biases on Q, K and V and NEOX rotary
// embeddings, and runs here too, as does qwen3 (no biases; each query and
// key head RMS-normalized before RoPE), and phi3 (Phi-3: fused Q|K|V and
// gate|up matrices, split at load, NEOX rotary embeddings); gemma2 is in
// reference_gemma.go. The LayerNorm architectures gpt2 and
// gptneox (Pythia) are in reference_ln.go.
//
// It shares no code with llama.cpp. Every step is written out once, in the
// order the model computes it, and names the TransformerLens hook it produces:
//
//	blocks.L.hook_resid_pre    residual stream entering layer L (L=0: token embeddings)
//	blocks.L.attn.hook_z       attention heads concatenated, before W_O
//	blocks.L.hook_attn_out     W_O z
//	blocks.L.hook_resid_mid    resid_pre + attn_out
//	blocks.L.hook_mlp_out      W_down(silu(W_gate x) * W_up x), x = RMSNorm(resid_mid)
//	blocks.L.hook_resid_post   resid_mid + mlp_out (= resid_pre of layer L+1)
//	ln_final.hook_normalized   RMSNorm(last resid_post) * output_norm
//	logits                     W_U ln_final
//
// Weights are decoded to float32 once, at Load. Every dot product, norm and
// softmax accumulates in float64 and rounds its result to float32 once, so the
// reference's own error is about 1e-7 relative. Sums of two activations (the
// residual adds) are float32 additions, as in llama.cpp, so resid_mid ==
// resid_pre + attn_out holds exactly.
//
// What to expect from llama.cpp's CPU backend, measured on the shared test
// models (worst relative L2 of any hook at any position):
//
//	F32 weights, F32 KV cache          1e-6 (13 tokens), 1e-5 (300 tokens)
//	F32 weights, F16 KV cache          3e-3: K and V rounded to half precision
//	F16 weights, F32 KV cache          7e-4: matmul inputs rounded to F16
//	Q8_0 weights, F32 KV cache         2e-2: matmul inputs quantized to Q8_0
//
// The growth with length is RoPE: llama.cpp builds the angles in float32,
// off by about 1e-7*pos radians.
//
// The reference is slow (no SIMD, no threads) and keeps the whole model in
// memory as float32: meant for small models and short prompts.
package reference

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/diff"
)

// Config holds the hyperparameters of a llama model.
type Config struct {
	NLayer   int
	DModel   int     // width of the residual stream
	NHead    int     // query heads
	NHeadKV  int     // key/value heads; NHead is a multiple of it (grouped-query attention)
	DHead    int     // width of one head; RoPE rotates all of it (llama.cpp requires n_rot == d_head for llama)
	DFF      int     // hidden width of the MLP
	NVocab   int     // rows of the token embedding and of W_U
	RopeBase float64 // llama.rope.freq_base, 10000 when absent
	// RopeFreqScale multiplies every RoPE angle: llama.cpp's freq_scale,
	// 1/rope.scaling.factor for linear RoPE scaling (see ropeFreqScale);
	// 0 means 1, plain RoPE. gemma3's sliding-window layers do not scale
	// (gemmaConfig.swaScale).
	RopeFreqScale float64
	NormEps       float64 // llama.attention.layer_norm_rms_epsilon

	// Arch is "llama" (also when empty), "qwen2", "qwen3", "phi3", "gpt2" or "gptneox"; the
	// last two are defined in reference_ln.go.
	Arch string
	// RopeDim is how many dimensions of each head RoPE rotates: DHead for
	// llama and qwen2, a part for gptneox (Pythia: a quarter), 0 for gpt2.
	RopeDim int
	// ParallelResidual is gptneox.use_parallel_residual.
	ParallelResidual bool
	// NCtxTrain bounds the positions of gpt2's learned position embedding.
	NCtxTrain int
}

// Model is a llama model whose weights are decoded to float32.
type Model struct {
	Config Config
	// TiedEmbeddings is true when the file has no output.weight and W_U is
	// token_embd.weight.
	TiedEmbeddings bool

	tokEmbd    []float32 // token_embd.weight: NVocab rows of DModel; row t embeds token t
	layers     []layer
	outputNorm []float32    // output_norm.weight: the γ of the final RMSNorm
	unembed    linear       // output.weight, or token_embd.weight when tied
	ln         *lnModel     // gpt2 and gptneox (reference_ln.go); nil for llama
	gemma      *gemmaConfig // gemma2 (reference_gemma.go); nil otherwise
	// ropeFreqs is rope_freqs.weight (llama only, as in Llama 3.1 and 3.2):
	// DHead/2 divisors of the RoPE angles, one per rotated pair; nil
	// without it.
	ropeFreqs []float32
}

type layer struct {
	attnNorm       []float32 // blk.L.attn_norm.weight
	qNorm, kNorm   []float32 // blk.L.attn_{q,k}_norm.weight (qwen3: an RMSNorm of each head); nil otherwise
	wq, wk, wv, wo linear    // blk.L.attn_{q,k,v,output}.weight (and .bias when present)
	ffnNorm        []float32 // blk.L.ffn_norm.weight
	gate, up, down linear    // blk.L.ffn_{gate,up,down}.weight (and .bias when present)
	// postAttnNorm and postFFNNorm are gemma2's
	// blk.L.post_attention_norm.weight and blk.L.post_ffw_norm.weight.
	postAttnNorm, postFFNNorm []float32
}

// linear is y = W x + b for a ggml weight of shape [in, out]: out rows of in
// contiguous values, so y[i] = sum_j w[i*in+j] * x[j]. b may be nil.
type linear struct {
	in, out int
	w, b    []float32
}

func (l linear) apply(x []float32) []float32 {
	if len(x) != l.in {
		panic(fmt.Sprintf("reference: linear of width %d applied to a vector of %d", l.in, len(x)))
	}
	y := make([]float32, l.out)
	for i := range y {
		s := diff.Dot(l.w[i*l.in:(i+1)*l.in], x)
		if l.b != nil {
			s += float64(l.b[i])
		}
		y[i] = float32(s)
	}
	return y
}

// Run computes every hook for tokens processed causally from position 0 (the
// caller includes BOS when the comparison should have it).
func (m *Model) Run(tokens []int32) (*Result, error) { return m.run(tokens, nil) }

// run is Run; edit, when set, may change each hook's rows in place as they
// are computed, before any later step reads them (see RunPatched).
func (m *Model) run(tokens []int32, edit func(name string, rows [][]float32)) (*Result, error) {
	c := m.Config
	if len(tokens) == 0 {
		return nil, fmt.Errorf("reference: no tokens")
	}
	if m.ln != nil {
		return m.runLN(tokens, edit)
	}
	if m.gemma != nil {
		return m.runGemma(tokens, edit)
	}
	r := &Result{Tokens: append([]int32(nil), tokens...), nLayer: c.NLayer, acts: map[string][][]float32{}, edit: edit}

	// blocks.0.hook_resid_pre: row t of token_embd.weight for token t.
	x := make([][]float32, len(tokens))
	for p, t := range tokens {
		if t < 0 || int(t) >= c.NVocab {
			return nil, fmt.Errorf("reference: token %d at position %d is outside the vocabulary (0..%d)", t, p, c.NVocab-1)
		}
		x[p] = append([]float32(nil), m.tokEmbd[int(t)*c.DModel:(int(t)+1)*c.DModel]...)
	}

	// Each layer: attention, then the MLP, each read from an RMS-normalized
	// copy of the residual stream and added back to it. The llama.cpp graph
	// node of each hook is named in brackets.
	for l, ly := range m.layers {
		r.add(fmt.Sprintf("blocks.%d.hook_resid_pre", l), x) // [inp_embd or l_out-(L-1)]

		z := m.attention(ly, x)
		r.add(fmt.Sprintf("blocks.%d.attn.hook_z", l), z) // [kqv_out-L]
		attnOut := mapRows(z, ly.wo.apply)
		r.add(fmt.Sprintf("blocks.%d.hook_attn_out", l), attnOut) // [attn_out-L; qwen2: unnamed MUL_MAT]
		mid := addRows(x, attnOut)
		r.add(fmt.Sprintf("blocks.%d.hook_resid_mid", l), mid) // [ffn_inp-L; phi3: unnamed ADD]

		mlpOut := mapRows(mid, func(v []float32) []float32 { return m.mlp(ly, v) })
		r.add(fmt.Sprintf("blocks.%d.hook_mlp_out", l), mlpOut) // [ffn_out-L]
		post := addRows(mid, mlpOut)
		r.add(fmt.Sprintf("blocks.%d.hook_resid_post", l), post) // [l_out-L]

		x = post // the resid_pre of layer L+1
	}

	final := mapRows(x, func(v []float32) []float32 { return rmsNorm(v, m.outputNorm, m.Config.NormEps) })
	r.add("ln_final.hook_normalized", final)         // [result_norm]
	r.add("logits", mapRows(final, m.unembed.apply)) // [result_output]
	return r, nil
}

// mlp is the SwiGLU feed-forward block for one position:
// W_down(silu(W_gate h) * W_up h), with h = RMSNorm(x) * ffn_norm.
func (m *Model) mlp(ly layer, x []float32) []float32 {
	h := rmsNorm(x, ly.ffnNorm, m.Config.NormEps)
	g, u := ly.gate.apply(h), ly.up.apply(h)
	for i := range g {
		g[i] = float32(silu(float64(g[i])) * float64(u[i]))
	}
	return ly.down.apply(g)
}

// attention returns z, the concatenated outputs of all query heads at every
// position, for the residual stream x of one layer. With h = RMSNorm(x) *
// attn_norm, q = RoPE(W_Q h + b_Q), k = RoPE(W_K h + b_K) and
// v = W_V h + b_V (the biases where the file has them: qwen2; for qwen3
// each head of W_Q h and W_K h is RMS-normalized before RoPE), the output
// of query head i at position p is
//
//	z_i[p] = sum over s <= p of softmax_s(q_i[p] · k_j[s] / sqrt(d_head)) v_j[s]
//
// where j = i / (n_head/n_head_kv) is the kv head that query head i reads.
func (m *Model) attention(ly layer, x [][]float32) [][]float32 {
	c := m.Config
	n := len(x)
	q := make([][]float32, n)
	k := make([][]float32, n)
	v := make([][]float32, n)
	for p := range x {
		h := rmsNorm(x[p], ly.attnNorm, c.NormEps)
		q[p], k[p], v[p] = ly.wq.apply(h), ly.wk.apply(h), ly.wv.apply(h)
		if ly.qNorm != nil {
			// qwen3: each head RMS-normalized with its own weights, with
			// the model's epsilon, before RoPE (llama.cpp's build_norm on
			// the [d_head, n_head, n_tokens] view)
			headNorm(q[p], ly.qNorm, c.NormEps)
			headNorm(k[p], ly.kNorm, c.NormEps)
		}
		// linear RoPE scaling in every layer: these graphs pass
		// freq_scale to ggml_rope_ext in every layer
		fs := c.freqScale()
		if c.Arch == "qwen2" || c.Arch == "qwen3" || c.Arch == "phi3" {
			// llama.cpp's rope type NEOX for these architectures; phi3
			// may rotate part of each head
			ropeNeoxScaled(q[p], p, c.DHead, c.RopeDim, c.RopeBase, fs)
			ropeNeoxScaled(k[p], p, c.DHead, c.RopeDim, c.RopeBase, fs)
		} else {
			ropeScaled(q[p], p, c.DHead, c.RopeBase, fs, m.ropeFreqs)
			ropeScaled(k[p], p, c.DHead, c.RopeBase, fs, m.ropeFreqs)
		}
	}

	// Query head h reads key/value head h/group: consecutive query heads
	// share a kv head (ggml's broadcast in mul_mat and flash_attn_ext).
	group := c.NHead / c.NHeadKV
	scale := 1 / math.Sqrt(float64(c.DHead))
	z := make([][]float32, n)
	for p := range z {
		z[p] = make([]float32, c.NHead*c.DHead)
		for h := 0; h < c.NHead; h++ {
			kv := h / group
			qh := q[p][h*c.DHead : (h+1)*c.DHead]
			// Causal: position p attends to positions 0..p.
			w := make([]float64, p+1)
			for s := range w {
				w[s] = diff.Dot(qh, k[s][kv*c.DHead:(kv+1)*c.DHead]) * scale
			}
			softmax(w)
			for i := 0; i < c.DHead; i++ {
				var sum float64
				for s, ws := range w {
					sum += ws * float64(v[s][kv*c.DHead+i])
				}
				z[p][h*c.DHead+i] = float32(sum)
			}
		}
	}
	return z
}

// rope rotates each head of vec (heads of width dHead, laid end to end) by
// the angles of position pos, as llama.cpp's rope type NORM does for the llama
// architecture: adjacent pairs (x[2i], x[2i+1]) of a head turn by
// theta_i = pos * base^(-2i/dHead):
//
//	x[2i]'   = x[2i]*cos(theta_i) - x[2i+1]*sin(theta_i)
//	x[2i+1]' = x[2i]*sin(theta_i) + x[2i+1]*cos(theta_i)
//
// (Rope type NEOX, used by other architectures, pairs x[i] with x[i+dHead/2]
// instead.) The angles are computed in float64; llama.cpp's CPU backend builds
// them in float32 by repeated multiplication, which differs by about
// 1e-7*pos radians.
func rope(vec []float32, pos, dHead int, base float64) []float32 {
	return ropeFactors(vec, pos, dHead, base, nil)
}

// ropeFactors is rope with per-frequency factors (rope_freqs.weight, the
// llama3 RoPE scaling of Llama 3.1 and 3.2): pair i turns by
// theta_i / freqs[i], as ggml_rope_ext's freq_factors divide the angle
// (ggml_rope_cache_init: theta/ff with ff = freq_factors[i0/2]). freqs nil
// is plain rope.
func ropeFactors(vec []float32, pos, dHead int, base float64, freqs []float32) []float32 {
	return ropeScaled(vec, pos, dHead, base, 1, freqs)
}

// ropeScaled is ropeFactors with linear RoPE scaling: every angle is also
// multiplied by freqScale (1/rope.scaling.factor), as ggml's rope_yarn
// does with ext_factor 0: theta = freq_scale · pos · base^(−2i/dHead) / ff.
// freqScale 1 is ropeFactors.
func ropeScaled(vec []float32, pos, dHead int, base, freqScale float64, freqs []float32) []float32 {
	for h := 0; h+dHead <= len(vec); h += dHead {
		for i := 0; i < dHead/2; i++ {
			theta := float64(pos) * freqScale * math.Pow(base, -2*float64(i)/float64(dHead))
			if freqs != nil {
				theta /= float64(freqs[i])
			}
			sin, cos := math.Sincos(theta)
			x0, x1 := float64(vec[h+2*i]), float64(vec[h+2*i+1])
			vec[h+2*i] = float32(x0*cos - x1*sin)
			vec[h+2*i+1] = float32(x0*sin + x1*cos)
		}
	}
	return vec
}

// freqScale is RopeFreqScale, 1 when unset.
func (c Config) freqScale() float64 {
	if c.RopeFreqScale == 0 {
		return 1
	}
	return c.RopeFreqScale
}

// headNorm replaces each head of vec (heads of len(gamma), laid end to
// end) by its rmsNorm with gamma.
func headNorm(vec, gamma []float32, eps float64) {
	for h := 0; h+len(gamma) <= len(vec); h += len(gamma) {
		copy(vec[h:], rmsNorm(vec[h:h+len(gamma)], gamma, eps))
	}
}

// rmsNorm returns x / sqrt(mean(x²) + eps) * gamma.
func rmsNorm(x, gamma []float32, eps float64) []float32 {
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(float64(v) * scale * float64(gamma[i]))
	}
	return y
}

// softmax replaces w by exp(w - max) / sum(exp(w - max)).
func softmax(w []float64) {
	hi := math.Inf(-1)
	for _, v := range w {
		hi = math.Max(hi, v)
	}
	var sum float64
	for i, v := range w {
		w[i] = math.Exp(v - hi)
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
}

// silu is x * sigmoid(x).
func silu(x float64) float64 { return x / (1 + math.Exp(-x)) }

// mapRows applies f to every row.
func mapRows(rows [][]float32, f func([]float32) []float32) [][]float32 {
	out := make([][]float32, len(rows))
	for i, r := range rows {
		out[i] = f(r)
	}
	return out
}

// addRows returns a + b, element by element, in float32.
func addRows(a, b [][]float32) [][]float32 {
	out := make([][]float32, len(a))
	for i := range a {
		out[i] = make([]float32, len(a[i]))
		for j := range a[i] {
			out[i][j] = a[i][j] + b[i][j]
		}
	}
	return out
}
