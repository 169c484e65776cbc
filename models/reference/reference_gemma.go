package reference

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// gemmaConfig holds what Gemma 2 and 3 add to llama (llama.cpp's
// src/models/gemma2-iswa.cpp and gemma3.cpp and load_hparams for
// LLM_ARCH_GEMMA2 and LLM_ARCH_GEMMA3).
type gemmaConfig struct {
	// attnSoftcap and finalSoftcap are c in c·tanh(s/c), applied to the
	// attention scores and to the logits; 0 (gemma3) applies none.
	attnSoftcap, finalSoftcap float64
	// swaBase is the rope base of the sliding-window layers (gemma3:
	// 10000, whatever rope.freq_base says; gemma2: rope.freq_base).
	swaBase float64
	// swaScale is the linear RoPE scaling of the sliding-window layers:
	// gemma3 1 (load_hparams sets rope_freq_scale_train_swa = 1, so
	// Gemma 3 4B, 12B and 27B's rope.scaling.factor 8 scales the global
	// layers only); gemma2 the model's (its graph passes one freq_scale to
	// every layer).
	swaScale float64
	// window is the sliding window: in a layer with swa[l], position p
	// attends to positions s with p − s < window.
	window int
	swa    []bool
	// attnScale multiplies q·k: 1/sqrt(d_head), or 1/sqrt(d_model/n_head)
	// for the 46-layer 27B model, as llama.cpp sets f_attention_scale.
	attnScale float64
}

// loadGemma reads a gemma2 or gemma3 file: the llama tensors (Gemma has
// no biases) plus blk.L.post_attention_norm.weight and
// blk.L.post_ffw_norm.weight (gemma3 also blk.L.attn_{q,k}_norm.weight),
// with the keys and defaults of llama.cpp's load_hparams. gemma2: always
// tied, sliding window 4096 in layers 0, 2, 4, ... (set_swa_pattern(2)),
// attention soft-cap 50 and final soft-cap 30. gemma3: tied unless the
// file has output.weight; with attention.sliding_window, five layers in
// six (set_swa_pattern(6)) attend within it and rotate with base 10000
// and no RoPE scaling, the others with rope.freq_base and the file's
// linear scaling (Gemma 3 4B, 12B, 27B: factor 8); no attention
// soft-cap; a final soft-cap only when the file sets one. Without a
// sliding window every gemma3 layer is global (llama.cpp's non-iswa graph,
// whose layers all take the file's base and scaling).
func loadGemma(f *models.File, arch string) (*Model, error) {
	p := arch + "."
	c, err := loadRMSHParams(f, p)
	if err != nil {
		return nil, err
	}
	c.Arch, c.RopeDim = arch, c.DHead
	if r := optionalUint(f, p+"rope.dimension_count", c.DHead); r != c.DHead {
		return nil, fmt.Errorf("%srope.dimension_count %d differs from the head width %d (Gemma rotates whole heads)", p, r, c.DHead)
	}
	g := &gemmaConfig{attnSoftcap: 50, finalSoftcap: 30, window: optionalUint(f, p+"attention.sliding_window", 4096), swaBase: c.RopeBase, swaScale: c.freqScale()}
	pattern, big := 2, 46 // llama.cpp's LLM_TYPE_27B has 46 layers
	if arch == "gemma3" {
		g.attnSoftcap, g.finalSoftcap, g.swaBase, g.swaScale = 0, 0, 10000, 1
		g.window = optionalUint(f, p+"attention.sliding_window", 0)
		pattern, big = 6, 62
		if g.window == 0 {
			pattern = 0 // no sliding window
		}
	} else if v, ok := metaFloat(f, p+"attn_logit_softcapping"); ok {
		g.attnSoftcap = v
	}
	if v, ok := metaFloat(f, p+"final_logit_softcapping"); ok {
		g.finalSoftcap = v
	}
	if g.attnSoftcap < 0 || g.finalSoftcap < 0 || arch == "gemma2" && (g.attnSoftcap == 0 || g.finalSoftcap == 0 || g.window <= 0) {
		return nil, fmt.Errorf("soft-caps %g and %g and sliding window %d must be positive", g.attnSoftcap, g.finalSoftcap, g.window)
	}
	g.attnScale = 1 / math.Sqrt(float64(c.DHead))
	if c.NLayer == big {
		g.attnScale = 1 / math.Sqrt(float64(c.DModel/c.NHead))
	}
	for l := 0; l < c.NLayer; l++ {
		g.swa = append(g.swa, pattern > 0 && l%pattern < pattern-1)
	}
	if _, ok := f.Tensor("output.weight"); ok && arch == "gemma2" {
		return nil, fmt.Errorf("tensor output.weight is not part of a gemma2 model (llama.cpp's loader unembeds with token_embd.weight)")
	}
	r := reader{f: f}
	m := &Model{Config: c, gemma: g}
	m.tokEmbd = r.read("token_embd.weight", c.DModel, c.NVocab)
	m.outputNorm = r.read("output_norm.weight", c.DModel)
	m.readUnembed(&r, false)
	q, kv := c.NHead*c.DHead, c.NHeadKV*c.DHead
	for l := 0; l < c.NLayer; l++ {
		lp := fmt.Sprintf("blk.%d.", l)
		var qNorm, kNorm []float32
		if arch == "gemma3" {
			qNorm = r.read(lp+"attn_q_norm.weight", c.DHead)
			kNorm = r.read(lp+"attn_k_norm.weight", c.DHead)
		}
		m.layers = append(m.layers, layer{
			qNorm:        qNorm,
			kNorm:        kNorm,
			attnNorm:     r.read(lp+"attn_norm.weight", c.DModel),
			wq:           r.linear(lp+"attn_q", c.DModel, q),
			wk:           r.linear(lp+"attn_k", c.DModel, kv),
			wv:           r.linear(lp+"attn_v", c.DModel, kv),
			wo:           r.linear(lp+"attn_output", q, c.DModel),
			postAttnNorm: r.read(lp+"post_attention_norm.weight", c.DModel),
			ffnNorm:      r.read(lp+"ffn_norm.weight", c.DModel),
			gate:         r.linear(lp+"ffn_gate", c.DModel, c.DFF),
			up:           r.linear(lp+"ffn_up", c.DModel, c.DFF),
			down:         r.linear(lp+"ffn_down", c.DFF, c.DModel),
			postFFNNorm:  r.read(lp+"post_ffw_norm.weight", c.DModel),
		})
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// runGemma is run for gemma2. Per layer, with TransformerLens's Gemma 2
// hooks (attn_out and mlp_out after the post-norms):
//
//	resid_pre[0]  token_embd row · sqrt(d_model)                  [inp_scaled]
//	z             softcapped, windowed attention (attentionGemma)  [kqv_out-L]
//	attn_out      RMSNorm(W_O z) · post_attention_norm             [attn_post_norm-L]
//	resid_mid     resid_pre + attn_out                             [sa_out-L]
//	mlp_out       RMSNorm(W_down(gelu(W_gate h) · W_up h)) · post_ffw_norm,
//	              h = RMSNorm(resid_mid) · ffn_norm                 [ffn_post_norm, MUL reading blk.L.post_ffw_norm.weight]
//	resid_post    resid_mid + mlp_out                              [l_out-L]
//
// then ln_final = RMSNorm(x) · output_norm and logits = c·tanh(W_U ln_final / c)
// with c the final soft-cap. GELU is ggml's (geluGGML), as in its geglu.
func (m *Model) runGemma(tokens []int32, edit func(name string, rows [][]float32)) (*Result, error) {
	c := m.Config
	r := &Result{Tokens: append([]int32(nil), tokens...), nLayer: c.NLayer, acts: map[string][][]float32{}, edit: edit}
	// ggml_scale by sqrtf(n_embd): one float32 product per element
	scale := float32(math.Sqrt(float64(c.DModel)))
	x := make([][]float32, len(tokens))
	for p, t := range tokens {
		if t < 0 || int(t) >= c.NVocab {
			return nil, fmt.Errorf("reference: token %d at position %d is outside the vocabulary (0..%d)", t, p, c.NVocab-1)
		}
		row := m.tokEmbd[int(t)*c.DModel : (int(t)+1)*c.DModel]
		x[p] = make([]float32, c.DModel)
		for i, v := range row {
			x[p][i] = v * scale
		}
	}
	eps := c.NormEps
	for l, ly := range m.layers {
		r.add(fmt.Sprintf("blocks.%d.hook_resid_pre", l), x)
		z := m.attentionGemma(ly, x, l)
		r.add(fmt.Sprintf("blocks.%d.attn.hook_z", l), z)
		attnOut := mapRows(z, func(v []float32) []float32 { return rmsNorm(ly.wo.apply(v), ly.postAttnNorm, eps) })
		r.add(fmt.Sprintf("blocks.%d.hook_attn_out", l), attnOut)
		mid := addRows(x, attnOut)
		r.add(fmt.Sprintf("blocks.%d.hook_resid_mid", l), mid)
		mlpOut := mapRows(mid, func(v []float32) []float32 {
			h := rmsNorm(v, ly.ffnNorm, eps)
			g, u := ly.gate.apply(h), ly.up.apply(h)
			for i := range g {
				g[i] = geluGGML(g[i]) * u[i]
			}
			return rmsNorm(ly.down.apply(g), ly.postFFNNorm, eps)
		})
		r.add(fmt.Sprintf("blocks.%d.hook_mlp_out", l), mlpOut)
		post := addRows(mid, mlpOut)
		r.add(fmt.Sprintf("blocks.%d.hook_resid_post", l), post)
		x = post
	}
	final := mapRows(x, func(v []float32) []float32 { return rmsNorm(v, m.outputNorm, eps) })
	r.add("ln_final.hook_normalized", final)
	fc := m.gemma.finalSoftcap
	r.add("logits", mapRows(final, func(v []float32) []float32 {
		out := m.unembed.apply(v)
		for i, s := range out {
			if fc > 0 {
				out[i] = float32(fc * math.Tanh(float64(s)/fc))
			}
		}
		return out
	}))
	return r, nil
}

// attentionGemma is attention for gemma2's and gemma3's layer l: q and k
// rotated NEOX style over whole heads (with the layer's base and linear
// scaling), the score of query p and key s
// c·tanh(attnScale·q·k / c) with c the attention soft-cap, and in a
// sliding-window layer only keys with p − s < window.
func (m *Model) attentionGemma(ly layer, x [][]float32, l int) [][]float32 {
	c, g := m.Config, m.gemma
	n := len(x)
	q, k, v := make([][]float32, n), make([][]float32, n), make([][]float32, n)
	for p := range x {
		h := rmsNorm(x[p], ly.attnNorm, c.NormEps)
		q[p], k[p], v[p] = ly.wq.apply(h), ly.wk.apply(h), ly.wv.apply(h)
		if ly.qNorm != nil { // gemma3
			headNorm(q[p], ly.qNorm, c.NormEps)
			headNorm(k[p], ly.kNorm, c.NormEps)
		}
		// llama_model::get_rope_freq_base and get_rope_freq_scale:
		// a sliding-window layer takes swaBase and swaScale, a global
		// layer the file's base and linear scaling
		base, scale := c.RopeBase, c.freqScale()
		if g.swa[l] {
			base, scale = g.swaBase, g.swaScale
		}
		ropeNeoxScaled(q[p], p, c.DHead, c.DHead, base, scale)
		ropeNeoxScaled(k[p], p, c.DHead, c.DHead, base, scale)
	}
	group := c.NHead / c.NHeadKV
	z := make([][]float32, n)
	for p := range z {
		z[p] = make([]float32, c.NHead*c.DHead)
		first := 0
		if g.swa[l] {
			first = max(0, p-g.window+1)
		}
		for h := 0; h < c.NHead; h++ {
			kv := h / group
			qh := q[p][h*c.DHead : (h+1)*c.DHead]
			w := make([]float64, p+1-first)
			for i := range w {
				s := diff.Dot(qh, k[first+i][kv*c.DHead:(kv+1)*c.DHead]) * g.attnScale
				if g.attnSoftcap > 0 {
					s = g.attnSoftcap * math.Tanh(s/g.attnSoftcap)
				}
				w[i] = s
			}
			softmax(w)
			for d := 0; d < c.DHead; d++ {
				var sum float64
				for i, ws := range w {
					sum += ws * float64(v[first+i][kv*c.DHead+d])
				}
				z[p][h*c.DHead+d] = float32(sum)
			}
		}
	}
	return z
}
