package reference

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// This file is the forward pass of the two LayerNorm architectures, GPT-2
// (gpt2) and GPT-NeoX (gptneox, the architecture of Pythia), as llama.cpp's
// graphs compute them (src/models/gpt2.cpp and gptneox.cpp). Each layer is
//
//	h         = LayerNorm(resid_pre; attn_norm)
//	q, k, v   = the three parts of W_QKV h + b_QKV (one fused matrix)
//	z         = causal softmax attention of q and k over v, as for llama
//	attn_out  = W_O z + b_O
//
// and then, for gpt2 and a gptneox with use_parallel_residual = false,
//
//	resid_mid  = resid_pre + attn_out
//	mlp_out    = W_down gelu(W_up LayerNorm(resid_mid; ffn_norm) + b_up) + b_down
//	resid_post = resid_mid + mlp_out
//
// while a gptneox with the parallel residual (Pythia) has no resid_mid:
//
//	mlp_out    = W_down gelu(W_up LayerNorm(resid_pre; ffn_norm) + b_up) + b_down
//	resid_post = (mlp_out + resid_pre) + attn_out
//
// in that order of float32 additions, llama.cpp's. gpt2 adds a learned
// position embedding to the token embedding before the first layer
// (resid_pre of layer 0); gptneox rotates the first RopeDim dimensions of
// each query and key head instead, with rope type NEOX. Both end with a
// LayerNorm (ln_final) and W_U, which for gpt2 may be token_embd.weight.

// lnModel holds what the LayerNorm architectures have beyond the fields of
// Model they share with llama (tokEmbd, outputNorm, unembed).
type lnModel struct {
	posEmbd     []float32 // position_embd.weight, NCtxTrain rows of DModel (gpt2); nil for gptneox
	outputNormB []float32 // output_norm.bias: the β of the final LayerNorm
	layers      []lnLayer
}

type lnLayer struct {
	attnNorm, attnNormB []float32 // blk.L.attn_norm.weight and .bias
	qkv, wo             linear    // blk.L.attn_qkv and blk.L.attn_output, with biases
	ffnNorm, ffnNormB   []float32 // blk.L.ffn_norm.weight and .bias
	up, down            linear    // blk.L.ffn_up and blk.L.ffn_down, with biases
}

// runLN is run for gpt2 and gptneox.
func (m *Model) runLN(tokens []int32, edit func(name string, rows [][]float32)) (*Result, error) {
	c := m.Config
	ln := m.ln
	r := &Result{Tokens: append([]int32(nil), tokens...), nLayer: c.NLayer, acts: map[string][][]float32{}, edit: edit}
	if ln.posEmbd != nil && len(tokens) > c.NCtxTrain {
		return nil, fmt.Errorf("reference: %d tokens, but the learned position embedding has %d positions", len(tokens), c.NCtxTrain)
	}

	// blocks.0.hook_resid_pre: the token's embedding, plus for gpt2 the
	// position's, added in float32 [inpL for gpt2, inp_embd for gptneox].
	x := make([][]float32, len(tokens))
	for p, t := range tokens {
		if t < 0 || int(t) >= c.NVocab {
			return nil, fmt.Errorf("reference: token %d at position %d is outside the vocabulary (0..%d)", t, p, c.NVocab-1)
		}
		x[p] = append([]float32(nil), m.tokEmbd[int(t)*c.DModel:(int(t)+1)*c.DModel]...)
		if ln.posEmbd != nil {
			pos := ln.posEmbd[p*c.DModel : (p+1)*c.DModel]
			for i := range x[p] {
				x[p][i] += pos[i]
			}
		}
	}

	for l, ly := range ln.layers {
		r.add(fmt.Sprintf("blocks.%d.hook_resid_pre", l), x) // [inpL / inp_embd or l_out-(L-1)]

		z := m.attentionLN(ly, x)
		r.add(fmt.Sprintf("blocks.%d.attn.hook_z", l), z) // [kqv_out-L]
		attnOut := mapRows(z, ly.wo.apply)
		r.add(fmt.Sprintf("blocks.%d.hook_attn_out", l), attnOut) // [the unnamed add of blk.L.attn_output.bias]

		var post [][]float32
		if c.ParallelResidual {
			mlpOut := mapRows(x, func(v []float32) []float32 { return m.mlpLN(ly, v) })
			r.add(fmt.Sprintf("blocks.%d.hook_mlp_out", l), mlpOut) // [ffn_out-L, the first]
			post = addRows(addRows(mlpOut, x), attnOut)
		} else {
			mid := addRows(x, attnOut)
			r.add(fmt.Sprintf("blocks.%d.hook_resid_mid", l), mid) // [ffn_inp-L]
			mlpOut := mapRows(mid, func(v []float32) []float32 { return m.mlpLN(ly, v) })
			r.add(fmt.Sprintf("blocks.%d.hook_mlp_out", l), mlpOut) // [ffn_out-L]
			post = addRows(mid, mlpOut)
		}
		r.add(fmt.Sprintf("blocks.%d.hook_resid_post", l), post) // [l_out-L]
		x = post
	}

	final := mapRows(x, func(v []float32) []float32 { return layerNorm(v, m.outputNorm, ln.outputNormB, c.NormEps) })
	r.add("ln_final.hook_normalized", final)         // [result_norm]
	r.add("logits", mapRows(final, m.unembed.apply)) // [result_output]
	return r, nil
}

// attentionLN returns z for the residual stream x of one layer: q, k and v
// are the three consecutive parts of W_QKV h + b_QKV with h =
// LayerNorm(x; attn_norm), as llama.cpp's views of the fused product take
// them (q at offset 0, k at d_model, v at d_model + n_head_kv·d_head), and
// for gptneox q and k are rotated by ropeNeox.
func (m *Model) attentionLN(ly lnLayer, x [][]float32) [][]float32 {
	c := m.Config
	kvDim := c.NHeadKV * c.DHead
	n := len(x)
	q := make([][]float32, n)
	k := make([][]float32, n)
	v := make([][]float32, n)
	for p := range x {
		qkv := ly.qkv.apply(layerNorm(x[p], ly.attnNorm, ly.attnNormB, c.NormEps))
		q[p] = qkv[:c.DModel]
		k[p] = qkv[c.DModel : c.DModel+kvDim]
		v[p] = qkv[c.DModel+kvDim:]
		if c.RopeDim > 0 {
			// gptneox's graph passes freq_scale in every layer
			ropeNeoxScaled(q[p], p, c.DHead, c.RopeDim, c.RopeBase, c.freqScale())
			ropeNeoxScaled(k[p], p, c.DHead, c.RopeDim, c.RopeBase, c.freqScale())
		}
	}
	return attend(q, k, v, c.NHead, c.NHeadKV, c.DHead)
}

// attend is causal softmax attention: the output of query head i at
// position p is sum over s <= p of softmax_s(q_i[p] · k_j[s] / sqrt(d_head))
// v_j[s], where j = i / (nHead/nHeadKV) is the kv head query head i reads.
// It is the same computation as Model.attention does for llama.
func attend(q, k, v [][]float32, nHead, nHeadKV, dHead int) [][]float32 {
	group := nHead / nHeadKV
	scale := 1 / math.Sqrt(float64(dHead))
	z := make([][]float32, len(q))
	for p := range z {
		z[p] = make([]float32, nHead*dHead)
		for h := 0; h < nHead; h++ {
			kv := h / group
			qh := q[p][h*dHead : (h+1)*dHead]
			w := make([]float64, p+1)
			for s := range w {
				w[s] = diff.Dot(qh, k[s][kv*dHead:(kv+1)*dHead]) * scale
			}
			softmax(w)
			for i := 0; i < dHead; i++ {
				var sum float64
				for s, ws := range w {
					sum += ws * float64(v[s][kv*dHead+i])
				}
				z[p][h*dHead+i] = float32(sum)
			}
		}
	}
	return z
}

// ropeNeox rotates each head of vec (heads of width dHead, laid end to end)
// by the angles of position pos as ggml's rope type NEOX does: within the
// first nRot dimensions of a head, x[i] is paired with x[i + nRot/2] and the
// pair turns by theta_i = pos * base^(-2i/nRot):
//
//	x[i]'        = x[i]*cos(theta_i) - x[i+nRot/2]*sin(theta_i)
//	x[i+nRot/2]' = x[i]*sin(theta_i) + x[i+nRot/2]*cos(theta_i)
//
// and the remaining dHead − nRot dimensions pass unchanged (Pythia rotates a
// quarter of each head).
func ropeNeox(vec []float32, pos, dHead, nRot int, base float64) {
	ropeNeoxScaled(vec, pos, dHead, nRot, base, 1)
}

// ropeNeoxScaled is ropeNeox with linear RoPE scaling: theta_i =
// freqScale · pos · base^(−2i/nRot), freqScale being llama.cpp's
// freq_scale (1/rope.scaling.factor; 1 is ropeNeox).
func ropeNeoxScaled(vec []float32, pos, dHead, nRot int, base, freqScale float64) {
	half := nRot / 2
	for h := 0; h+dHead <= len(vec); h += dHead {
		for i := 0; i < half; i++ {
			theta := float64(pos) * freqScale * math.Pow(base, -2*float64(i)/float64(nRot))
			sin, cos := math.Sincos(theta)
			x0, x1 := float64(vec[h+i]), float64(vec[h+i+half])
			vec[h+i] = float32(x0*cos - x1*sin)
			vec[h+i+half] = float32(x0*sin + x1*cos)
		}
	}
}

// mlpLN is the GELU feed-forward block for one position:
// W_down gelu(W_up h + b_up) + b_down, with h = LayerNorm(x; ffn_norm).
func (m *Model) mlpLN(ly lnLayer, x []float32) []float32 {
	a := ly.up.apply(layerNorm(x, ly.ffnNorm, ly.ffnNormB, m.Config.NormEps))
	for i, v := range a {
		a[i] = geluGGML(v)
	}
	return ly.down.apply(a)
}

// layerNorm returns (x − mean(x)) / sqrt(var(x) + eps) * gamma + beta, the
// variance being the mean square deviation (divided by n), as ggml_norm
// followed by the weight and bias computes it.
func layerNorm(x, gamma, beta []float32, eps float64) []float32 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	mean := s / float64(len(x))
	var ss float64
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	scale := 1 / math.Sqrt(ss/float64(len(x))+eps)
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32((float64(v)-mean)*scale*float64(gamma[i]) + float64(beta[i]))
	}
	return y
}

// GELU constants of ggml (ggml-cpu/vec.h), as float32.
const (
	geluCoefA      float32 = 0.044715
	geluSqrt2OverP float32 = 0.79788456080286535587989211986876
)

// geluTanh is GELU's tanh approximation, the function GPT-2 was trained with
// ("gelu_new") and the one ggml_gelu computes, in float32 operations as
// ggml_gelu_f32 writes them:
//
//	0.5·x·(1 + tanh(sqrt(2/π)·x·(1 + 0.044715·x²)))
//
// (Pythia was trained with the exact erf GELU; llama.cpp runs it with this
// approximation, which differs by at most about 5e-4.)
func geluTanh(x float32) float32 {
	inner := float32(geluSqrt2OverP*x) * (1 + float32(float32(geluCoefA*x)*x))
	return float32(float32(0.5*x) * (1 + float32(math.Tanh(float64(inner)))))
}

// geluGGML is ggml's GELU on float32 input as its CPU backend computes it
// (GGML_GELU_FP16): for -10 < x < 10 it rounds x to half precision and looks
// up geluTanh of that, rounded to half precision (a table of 65536 values
// built at startup); below -10 it is 0 and above 10 it is x. The half
// precision roundings make it differ from geluTanh(x) by up to about 1e-3
// relative, far more than llama.cpp's other rounding, so the reference does
// what ggml does; GPU backends evaluate geluTanh in float32 instead.
func geluGGML(x float32) float32 {
	switch {
	case x <= -10:
		return 0
	case x >= 10:
		return x
	}
	h := models.Float16ToFloat32(models.Float32ToFloat16(x))
	return models.Float16ToFloat32(models.Float32ToFloat16(geluTanh(h)))
}
