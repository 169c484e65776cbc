package models

import "fmt"

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
