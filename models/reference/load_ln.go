package reference

import (
	"fmt"

	"github.com/lldiff/lldiff/models"
)

// loadLN reads a gpt2 or gptneox model with the keys and defaults of
// llama.cpp's llama_model::load_hparams for LLM_ARCH_GPT2 and
// LLM_ARCH_GPTNEOX, then its weights. gptneox's RoPE takes linear scaling
// and refuses other scaling, as load does for llama (ropeFreqScale; load
// has refused mixture-of-experts metadata).
func loadLN(f *models.File) (*Model, error) {
	arch := f.Architecture()
	a := arch + "."
	c, err := loadShape(f, a, true)
	if err != nil {
		return nil, err
	}
	c.Arch = arch
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
		c.RopeDim = optionalUint(f, a+"rope.dimension_count", c.DHead)
		if c.RopeDim > c.DHead || c.RopeDim%2 != 0 {
			return nil, fmt.Errorf("%srope.dimension_count %d must be even and at most the head width %d", a, c.RopeDim, c.DHead)
		}
		c.RopeBase = 10000
		if b, ok := metaFloat(f, a+"rope.freq_base"); ok {
			c.RopeBase = b
		}
		if c.RopeFreqScale, err = ropeFreqScale(f, a); err != nil {
			return nil, err
		}
	}
	if c.NVocab, err = nVocab(f); err != nil {
		return nil, err
	}

	r := reader{f: f}
	m := &Model{Config: c, ln: &lnModel{}}
	m.tokEmbd = r.read("token_embd.weight", c.DModel, c.NVocab)
	if arch == "gpt2" {
		m.ln.posEmbd = r.read("position_embd.weight", c.DModel, c.NCtxTrain)
	}
	m.outputNorm = r.read("output_norm.weight", c.DModel)
	m.ln.outputNormB = r.read("output_norm.bias", c.DModel)
	m.readUnembed(&r, arch == "gptneox")
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
