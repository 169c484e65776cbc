package reference

import (
	"fmt"

	"github.com/lldiff/lldiff/models"
)

// loadLN reads a gpt2 or gptneox model with the keys and defaults of
// llama.cpp's llama_model::load_hparams for LLM_ARCH_GPT2 and
// LLM_ARCH_GPTNEOX, then its weights. It refuses RoPE scaling and
// mixture-of-experts metadata, as load does for llama.
func loadLN(f *models.File) (*Model, error) {
	arch := f.Architecture()
	a := arch + "."
	if n, _ := f.Uint(a + "expert_count"); n > 0 {
		return nil, fmt.Errorf("mixture-of-experts models (%sexpert_count = %d) are not supported", a, n)
	}
	c := Config{Arch: arch}
	var err error
	required := func(key string) int {
		v, ok := f.Uint(key)
		if !ok && err == nil {
			err = fmt.Errorf("metadata %s is missing or not a single non-negative integer", key)
		}
		return int(v)
	}
	optional := func(key string, def int) int {
		if v, ok := f.Uint(key); ok {
			return int(v)
		}
		return def
	}
	c.NLayer = required(a + "block_count")
	c.DModel = required(a + "embedding_length")
	c.DFF = required(a + "feed_forward_length")
	c.NHead = required(a + "attention.head_count")
	c.NCtxTrain = required(a + "context_length")
	if err != nil {
		return nil, err
	}
	if c.NHead == 0 {
		return nil, fmt.Errorf("%sattention.head_count is 0", a)
	}
	c.NHeadKV = optional(a+"attention.head_count_kv", c.NHead)
	if c.NHeadKV == 0 || c.NHead%c.NHeadKV != 0 {
		return nil, fmt.Errorf("%d query heads cannot share %d kv heads evenly", c.NHead, c.NHeadKV)
	}
	c.DHead = optional(a+"attention.key_length", c.DModel/c.NHead)
	if dv := optional(a+"attention.value_length", c.DHead); dv != c.DHead {
		return nil, fmt.Errorf("key head width %d differs from value head width %d", c.DHead, dv)
	}
	if c.NHead*c.DHead != c.DModel {
		return nil, fmt.Errorf("%d heads of %d do not make d_model %d, as the %s graph needs", c.NHead, c.DHead, c.DModel, arch)
	}
	eps, ok := metaFloat(f, a+"attention.layer_norm_epsilon")
	if !ok {
		return nil, fmt.Errorf("metadata %sattention.layer_norm_epsilon is missing", a)
	}
	c.NormEps = eps
	if arch == "gptneox" {
		par, ok := f.Bool(a + "use_parallel_residual")
		if !ok {
			return nil, fmt.Errorf("metadata %suse_parallel_residual is missing (llama.cpp requires it)", a)
		}
		c.ParallelResidual = par
		c.RopeDim = optional(a+"rope.dimension_count", c.DHead)
		if c.RopeDim > c.DHead || c.RopeDim%2 != 0 {
			return nil, fmt.Errorf("%srope.dimension_count %d must be even and at most the head width %d", a, c.RopeDim, c.DHead)
		}
		c.RopeBase = 10000
		if b, ok := metaFloat(f, a+"rope.freq_base"); ok {
			c.RopeBase = b
		}
		if t, ok := f.String(a + "rope.scaling.type"); ok && t != "none" && t != "linear" {
			return nil, fmt.Errorf("RoPE scaling type %q is not supported (only plain RoPE)", t)
		}
		for _, key := range []string{a + "rope.scaling.factor", a + "rope.scale_linear"} {
			if v, ok := metaFloat(f, key); ok && v != 0 && v != 1 {
				return nil, fmt.Errorf("RoPE scaling (%s = %g) is not supported (only plain RoPE)", key, v)
			}
		}
	}

	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return nil, fmt.Errorf("no 2-dimensional tensor token_embd.weight")
	}
	c.NVocab = int(emb.Dims[1])

	r := reader{f: f}
	m := &Model{Config: c, ln: &lnModel{}}
	m.tokEmbd = r.read("token_embd.weight", c.DModel, c.NVocab)
	if arch == "gpt2" {
		m.ln.posEmbd = r.read("position_embd.weight", c.DModel, c.NCtxTrain)
	}
	m.outputNorm = r.read("output_norm.weight", c.DModel)
	m.ln.outputNormB = r.read("output_norm.bias", c.DModel)
	if _, ok := f.Tensor("output.weight"); ok || arch == "gptneox" {
		m.unembed = r.linear("output", c.DModel, c.NVocab)
	} else {
		m.TiedEmbeddings = true
		m.unembed = linear{in: c.DModel, out: c.NVocab, w: m.tokEmbd}
	}
	if m.unembed.b != nil {
		// llama.cpp's gpt2 and gptneox graphs add no output bias (and
		// refuse a file with one): neither may the reference.
		return nil, fmt.Errorf("output.bias is not part of the %s architecture in llama.cpp", arch)
	}
	kv := c.NHeadKV * c.DHead
	for l := 0; l < c.NLayer; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		m.ln.layers = append(m.ln.layers, lnLayer{
			attnNorm:  r.read(p+"attn_norm.weight", c.DModel),
			attnNormB: r.read(p+"attn_norm.bias", c.DModel),
			qkv:       r.linearBias(p+"attn_qkv", c.DModel, c.DModel+2*kv),
			wo:        r.linearBias(p+"attn_output", c.DModel, c.DModel),
			ffnNorm:   r.read(p+"ffn_norm.weight", c.DModel),
			ffnNormB:  r.read(p+"ffn_norm.bias", c.DModel),
			up:        r.linearBias(p+"ffn_up", c.DModel, c.DFF),
			down:      r.linearBias(p+"ffn_down", c.DFF, c.DModel),
		})
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// linearBias reads prefix.weight [in, out] and the prefix.bias [out] that
// the LayerNorm architectures require.
func (r *reader) linearBias(prefix string, in, out int) linear {
	return linear{in: in, out: out, w: r.read(prefix+".weight", in, out), b: r.read(prefix+".bias", out)}
}
