package models

import (
	"fmt"
	"math"
)

// layerNormArch checks a gpt2 or gptneox file as llama.cpp's loader reads
// it (llama_model::load_hparams and load_tensors for LLM_ARCH_GPT2 and
// LLM_ARCH_GPTNEOX): LayerNorm weights and biases, one fused attn_qkv
// matrix with its bias, biases on every matrix, learned positions for gpt2,
// partial NEOX rotary embeddings and use_parallel_residual for gptneox.
func (c *checker) layerNormArch(f *File, arch string) {
	a := arch + "."
	c.requireHParams(f, a, "attention.layer_norm_epsilon")
	if arch == "gptneox" {
		c.requireType(f, a+"use_parallel_residual", ggufBool, true, false)
		c.requireType(f, a+"rope.dimension_count", ggufUint32, false, false)
	}
	if c.n > 0 {
		return
	}
	in := c.info(f, "attention.layer_norm_epsilon")
	if in == nil {
		return
	}
	if in.NLayer <= 0 || in.DModel <= 0 || in.NCtxTrain <= 0 {
		c.addf("block_count %d, embedding_length %d and context_length %d must be positive", in.NLayer, in.DModel, in.NCtxTrain)
		return
	}
	if in.NLayer > maxLayers {
		c.addf("block_count %d is more than llama.cpp's limit of %d layers", in.NLayer, maxLayers)
		return
	}
	if in.NLayer > len(f.Tensors) {
		c.addf("block_count %d is absurd for a file of %d tensors (a layer has 12)", in.NLayer, len(f.Tensors))
		return
	}
	c.valueLength(f, in)
	if in.DHead <= 0 {
		c.addf("head dimension is 0")
		return
	}
	if arch == "gptneox" && (in.RopeDim > in.DHead || in.RopeDim%2 != 0) {
		c.addf("rope.dimension_count %d must be even and at most the head dimension %d", in.RopeDim, in.DHead)
	}
	if c.n > 0 {
		return
	}

	d := in.DModel
	c.tensor(f, "token_embd.weight", d, in.NVocab)
	if arch == "gpt2" {
		c.tensor(f, "position_embd.weight", d, in.NCtxTrain)
	}
	c.tensor(f, "output_norm.weight", d)
	c.tensor(f, "output_norm.bias", d)
	if _, ok := c.tensors["output.weight"]; ok || arch == "gptneox" {
		c.tensor(f, "output.weight", d, in.NVocab)
	}
	for il := range in.NLayer {
		_, nKV, dff, ok := c.layerDims(f, in, arch, il, true)
		if !ok {
			return
		}
		qkv := d + 2*nKV*in.DHead
		p := fmt.Sprintf("blk.%d.", il)
		c.tensor(f, p+"attn_norm.weight", d)
		c.tensor(f, p+"attn_norm.bias", d)
		c.tensor(f, p+"attn_qkv.weight", d, qkv)
		c.tensor(f, p+"attn_qkv.bias", qkv)
		c.tensor(f, p+"attn_output.weight", d, d)
		c.tensor(f, p+"attn_output.bias", d)
		c.tensor(f, p+"ffn_norm.weight", d)
		c.tensor(f, p+"ffn_norm.bias", d)
		c.tensor(f, p+"ffn_up.weight", d, dff)
		c.tensor(f, p+"ffn_up.bias", dff)
		c.tensor(f, p+"ffn_down.weight", dff, d)
		c.tensor(f, p+"ffn_down.bias", d)
	}
	c.unused(f, in)
}

// phi3Arch checks a phi3 file as llama.cpp's loader reads it
// (load_hparams and load_tensors for LLM_ARCH_PHI3): RMSNorm weights
// without biases, one fused attn_qkv matrix of d_model + 2·kv rows (its
// graph views Q, K and V out of the product), query heads spanning
// d_model, ffn_up of 2·d_ff rows (gate then up, split by ggml_swiglu),
// NEOX rotary embeddings over rope.dimension_count dimensions of each
// head, and the optional per-frequency factors of Phi-3's long-context
// models. attention.sliding_window is read and ignored: this llama.cpp
// turns Phi-3's sliding window off.
func (c *checker) phi3Arch(f *File) {
	const a = "phi3."
	c.requireHParams(f, a, "attention.layer_norm_rms_epsilon")
	c.requireType(f, a+"rope.dimension_count", ggufUint32, false, false)
	c.requireType(f, a+"attention.sliding_window", ggufUint32, false, false)
	if c.n > 0 {
		return
	}
	in := c.info(f, "attention.layer_norm_rms_epsilon")
	if in == nil {
		return
	}
	if in.NLayer <= 0 || in.DModel <= 0 || in.NCtxTrain <= 0 {
		c.addf("block_count %d, embedding_length %d and context_length %d must be positive", in.NLayer, in.DModel, in.NCtxTrain)
		return
	}
	if in.NLayer > maxLayers {
		c.addf("block_count %d is more than llama.cpp's limit of %d layers", in.NLayer, maxLayers)
		return
	}
	if in.NLayer > len(f.Tensors) {
		c.addf("block_count %d is absurd for a file of %d tensors (a layer has 6)", in.NLayer, len(f.Tensors))
		return
	}
	c.valueLength(f, in)
	if in.DHead <= 0 {
		c.addf("head dimension is 0")
		return
	}
	if in.RopeDim > in.DHead || in.RopeDim%2 != 0 || in.RopeDim <= 0 {
		c.addf("%srope.dimension_count %d must be even and in 2..%d (the head dimension)", a, in.RopeDim, in.DHead)
	}
	if c.n > 0 {
		return
	}
	d := in.DModel
	c.tensor(f, "token_embd.weight", d, in.NVocab)
	c.tensor(f, "output_norm.weight", d)
	if _, ok := c.tensors["output.weight"]; ok {
		c.tensor(f, "output.weight", d, in.NVocab)
	}
	c.optional(f, "rope_factors_long.weight", in.RopeDim/2)
	c.optional(f, "rope_factors_short.weight", in.RopeDim/2)
	for il := range in.NLayer {
		_, nKV, dff, ok := c.layerDims(f, in, "phi3", il, true)
		if !ok {
			return
		}
		p := fmt.Sprintf("blk.%d.", il)
		c.tensor(f, p+"attn_norm.weight", d)
		c.tensor(f, p+"attn_qkv.weight", d, d+2*nKV*in.DHead)
		c.tensor(f, p+"attn_output.weight", d, d)
		c.tensor(f, p+"ffn_norm.weight", d)
		c.tensor(f, p+"ffn_up.weight", d, 2*dff)
		c.tensor(f, p+"ffn_down.weight", dff, d)
	}
	c.unused(f, in)
}

// gemma2Arch checks a gemma2 file as llama.cpp's loader reads it
// (load_hparams and load_tensors for LLM_ARCH_GEMMA2): RMSNorm weights
// before and after attention and the MLP, separate Q, K and V matrices
// whose heads need not span d_model, a gated MLP, rotary embeddings over
// whole heads, and no output.weight (the loader unembeds with
// token_embd.weight). The soft-capping values and the sliding window are
// optional (llama.cpp's defaults: 50, 30 and 4096), and must be positive:
// llama.cpp divides by the soft-caps. gemma3 (LLM_ARCH_GEMMA3) adds the
// per-head norms attn_q_norm and attn_k_norm, takes an optional
// output.weight, and has no attention soft-cap.
func (c *checker) gemmaArch(f *File, arch string) {
	a := arch + "."
	c.requireHParams(f, a, "attention.layer_norm_rms_epsilon")
	c.requireType(f, a+"rope.dimension_count", ggufUint32, false, false)
	c.requireType(f, a+"attention.sliding_window", ggufUint32, false, false)
	c.requireType(f, a+"attn_logit_softcapping", ggufFloat32, false, false)
	c.requireType(f, a+"final_logit_softcapping", ggufFloat32, false, false)
	if c.n > 0 {
		return
	}
	in := c.info(f, "attention.layer_norm_rms_epsilon")
	if in == nil {
		return
	}
	if in.NLayer <= 0 || in.DModel <= 0 || in.NCtxTrain <= 0 {
		c.addf("block_count %d, embedding_length %d and context_length %d must be positive", in.NLayer, in.DModel, in.NCtxTrain)
		return
	}
	if in.NLayer > maxLayers {
		c.addf("block_count %d is more than llama.cpp's limit of %d layers", in.NLayer, maxLayers)
		return
	}
	if in.NLayer > len(f.Tensors) {
		c.addf("block_count %d is absurd for a file of %d tensors (a layer has 11)", in.NLayer, len(f.Tensors))
		return
	}
	c.valueLength(f, in)
	if in.DHead <= 0 {
		c.addf("head dimension is 0")
		return
	}
	if in.RopeDim != in.DHead {
		c.addf("%srope.dimension_count %d differs from the head dimension %d: lldiff's reference rotates whole heads, as Gemma does", a, in.RopeDim, in.DHead)
	}
	for _, k := range []string{"attn_logit_softcapping", "final_logit_softcapping"} {
		if v, ok := f.Float(a + k); ok && !(v > 0 && v < math.Inf(1)) && !(arch == "gemma3" && v == 0) {
			c.addFix(fixHParam, "%s%s is %v: llama.cpp divides the logits by it; it must be positive", a, k, v)
		}
	}
	if w, ok := f.Uint(a + "attention.sliding_window"); ok && w == 0 && arch == "gemma2" {
		c.addFix(fixHParam, "%sattention.sliding_window is 0: every other layer would attend to nothing", a)
	}
	// llama.cpp puts layer l in the sliding window when l % p < p − 1
	// (p = 2 for gemma2, 6 for gemma3 with a window); with no layer outside
	// it, its cache for the global layers is empty and llama_decode
	// aborts (GGML_ASSERT(buffer))
	if w, _ := f.Uint(a + "attention.sliding_window"); (arch == "gemma2" && in.NLayer < 2) || (arch == "gemma3" && w > 0 && in.NLayer < 6) {
		c.addf("%d layers all use the sliding window, and llama.cpp aborts on a %s model without a global-attention layer (layer %d is the first)",
			in.NLayer, arch, map[string]int{"gemma2": 1, "gemma3": 5}[arch])
	}
	if c.n > 0 {
		return
	}
	d := in.DModel
	c.tensor(f, "token_embd.weight", d, in.NVocab)
	c.tensor(f, "output_norm.weight", d)
	if _, ok := c.tensors["output.weight"]; ok && arch == "gemma3" {
		c.tensor(f, "output.weight", d, in.NVocab)
	}
	for il := range in.NLayer {
		nHead, nKV, dff, ok := c.layerDims(f, in, arch, il, false)
		if !ok {
			return
		}
		p := fmt.Sprintf("blk.%d.", il)
		c.tensor(f, p+"attn_norm.weight", d)
		if arch == "gemma3" {
			c.tensor(f, p+"attn_q_norm.weight", in.DHead)
			c.tensor(f, p+"attn_k_norm.weight", in.DHead)
		}
		c.tensor(f, p+"attn_q.weight", d, nHead*in.DHead)
		c.tensor(f, p+"attn_k.weight", d, nKV*in.DHead)
		c.tensor(f, p+"attn_v.weight", d, nKV*in.DHead)
		c.tensor(f, p+"attn_output.weight", nHead*in.DHead, d)
		c.tensor(f, p+"post_attention_norm.weight", d)
		c.tensor(f, p+"ffn_norm.weight", d)
		c.tensor(f, p+"ffn_gate.weight", d, dff)
		c.tensor(f, p+"ffn_up.weight", d, dff)
		c.tensor(f, p+"ffn_down.weight", dff, d)
		c.tensor(f, p+"post_ffw_norm.weight", d)
	}
	c.unused(f, in)
}
