package reference

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// Architectures are the general.architecture values the reference runs.
var Architectures = []string{"llama", "gpt2", "gptneox", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"}

// Load reads a GGUF file of one of Architectures and decodes all its
// weights to float32. It refuses, with an error that says why, files the
// reference does not define: other architectures, mixture-of-experts
// layers, RoPE scaling other than linear (yarn, longrope; linear scaling
// is applied as llama.cpp does, see ropeFreqScale, and per-frequency RoPE
// factors, rope_freqs.weight as in Llama 3.1 and 3.2, for llama), and
// tensor types other than F32, F16, Q4_0 and Q8_0.
func Load(path string) (*Model, error) {
	f, err := models.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := load(f)
	if err != nil {
		return nil, fmt.Errorf("reference: %s: %w", path, err)
	}
	return m, nil
}

// load dispatches on the architecture; for llama, qwen2 and qwen3 it reads
// the hyperparameters with the same keys and defaults as llama.cpp's
// llama_model::load_hparams for LLM_ARCH_LLAMA, LLM_ARCH_QWEN2 and
// LLM_ARCH_QWEN3, then the weights (qwen2's biases on Q, K and V and its
// optional output.bias are read by linear when the file has them; qwen3's
// per-head norms attn_q_norm and attn_k_norm are required).
func load(f *models.File) (*Model, error) {
	a := f.Architecture()
	if !slices.Contains(Architectures, a) {
		return nil, fmt.Errorf("architecture %q is not supported: the reference implements %s", a, strings.Join(Architectures, ", "))
	}
	if n, _ := f.Uint(a + ".expert_count"); n > 0 {
		return nil, fmt.Errorf("mixture-of-experts models (%s.expert_count = %d) are not supported", a, n)
	}
	if a == "gpt2" || a == "gptneox" {
		return loadLN(f)
	}
	p := a + "."
	if _, ok := f.Tensor("rope_freqs.weight"); ok && a != "llama" {
		// llama.cpp's qwen2 loader does not load it either
		return nil, fmt.Errorf("per-frequency RoPE factors (rope_freqs.weight) are not part of a %s model", a)
	}
	for _, n := range []string{"rope_factors_long.weight", "rope_factors_short.weight"} {
		if _, ok := f.Tensor(n); ok {
			return nil, fmt.Errorf("long-context RoPE factors (%s) are not supported (only plain RoPE)", n)
		}
	}
	switch a {
	case "phi3":
		return loadPhi3(f)
	case "gemma2", "gemma3":
		return loadGemma(f, a)
	}

	c, err := loadRMSHParams(f, p)
	if err != nil {
		return nil, err
	}
	// llama.cpp refuses n_rot != head width for llama and qwen2; so does
	// the reference.
	if r := optionalUint(f, p+"rope.dimension_count", c.DHead); r != c.DHead {
		return nil, fmt.Errorf("%srope.dimension_count %d differs from the head width %d (llama.cpp refuses this too)", p, r, c.DHead)
	}
	if a == "qwen2" || a == "qwen3" {
		// a llama Config leaves Arch "" and RopeDim 0 (all of the head)
		c.Arch, c.RopeDim = a, c.DHead
	}

	r := reader{f: f}
	m := &Model{Config: c}
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		if m.ropeFreqs, err = readRopeFreqs(&r, c.DHead); err != nil {
			return nil, err
		}
	}
	m.tokEmbd = r.read("token_embd.weight", c.DModel, c.NVocab)
	m.outputNorm = r.read("output_norm.weight", c.DModel)
	m.readUnembed(&r, false)
	q, kv := c.NHead*c.DHead, c.NHeadKV*c.DHead
	for l := 0; l < c.NLayer; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		// llama.cpp's qwen2 loader has no other biases, its qwen3 loader
		// none, and both refuse a file with tensors they do not load
		var noBias []string
		switch a {
		case "qwen2":
			noBias = []string{"attn_output", "ffn_gate", "ffn_up", "ffn_down"}
		case "qwen3":
			noBias = []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
		}
		for _, b := range noBias {
			if _, ok := f.Tensor(p + b + ".bias"); ok {
				return nil, fmt.Errorf("tensor %s%s.bias is not part of a %s model", p, b, a)
			}
		}
		var qNorm, kNorm []float32
		if a == "qwen3" {
			qNorm = r.read(p+"attn_q_norm.weight", c.DHead)
			kNorm = r.read(p+"attn_k_norm.weight", c.DHead)
		}
		m.layers = append(m.layers, layer{
			qNorm:    qNorm,
			kNorm:    kNorm,
			attnNorm: r.read(p+"attn_norm.weight", c.DModel),
			wq:       r.linear(p+"attn_q", c.DModel, q),
			wk:       r.linear(p+"attn_k", c.DModel, kv),
			wv:       r.linear(p+"attn_v", c.DModel, kv),
			wo:       r.linear(p+"attn_output", q, c.DModel),
			ffnNorm:  r.read(p+"ffn_norm.weight", c.DModel),
			gate:     r.linear(p+"ffn_gate", c.DModel, c.DFF),
			up:       r.linear(p+"ffn_up", c.DModel, c.DFF),
			down:     r.linear(p+"ffn_down", c.DFF, c.DModel),
		})
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// loadRMSHParams reads the hyperparameters of an RMSNorm architecture
// under the key prefix p: the shape (loadShape), the rope base (default
// 10000) and linear scaling (ropeFreqScale), the norm epsilon and the
// vocabulary size.
func loadRMSHParams(f *models.File, p string) (Config, error) {
	c, err := loadShape(f, p, false)
	if err != nil {
		return c, err
	}
	c.RopeBase = 10000
	if b, ok := metaFloat(f, p+"rope.freq_base"); ok {
		c.RopeBase = b
	}
	if c.RopeFreqScale, err = ropeFreqScale(f, p); err != nil {
		return c, err
	}
	eps, ok := metaFloat(f, p+"attention.layer_norm_rms_epsilon")
	if !ok {
		return c, fmt.Errorf("metadata %sattention.layer_norm_rms_epsilon is missing", p)
	}
	c.NormEps = eps
	c.NVocab, err = nVocab(f)
	return c, err
}

// loadPhi3 reads a phi3 file as llama.cpp's loader does for LLM_ARCH_PHI3:
// the fused attn_qkv.weight is split into W_Q, W_K and W_V (its rows are
// the d_model query rows, then the key rows, then the value rows, as the
// graph's views take them), and the fused ffn_up.weight into W_gate (the
// first d_ff rows, which ggml_swiglu passes through silu) and W_up (the
// last d_ff). RoPE is NEOX over rope.dimension_count dimensions of each
// head (default all).
func loadPhi3(f *models.File) (*Model, error) {
	const p = "phi3."
	c, err := loadRMSHParams(f, p)
	if err != nil {
		return nil, err
	}
	c.Arch = "phi3"
	c.RopeDim = optionalUint(f, p+"rope.dimension_count", c.DHead)
	if c.RopeDim <= 0 || c.RopeDim > c.DHead || c.RopeDim%2 != 0 {
		return nil, fmt.Errorf("%srope.dimension_count %d must be even and in 2..%d (the head width)", p, c.RopeDim, c.DHead)
	}
	if c.NHead*c.DHead != c.DModel {
		return nil, fmt.Errorf("%d heads of %d do not span d_model %d (llama.cpp's phi3 graph needs them to)", c.NHead, c.DHead, c.DModel)
	}
	r := reader{f: f}
	m := &Model{Config: c}
	m.tokEmbd = r.read("token_embd.weight", c.DModel, c.NVocab)
	m.outputNorm = r.read("output_norm.weight", c.DModel)
	m.readUnembed(&r, false)
	if _, ok := f.Tensor("output.bias"); ok {
		return nil, fmt.Errorf("tensor output.bias is not part of a phi3 model")
	}
	kv := c.NHeadKV * c.DHead
	for l := 0; l < c.NLayer; l++ {
		lp := fmt.Sprintf("blk.%d.", l)
		qkv := r.read(lp+"attn_qkv.weight", c.DModel, c.DModel+2*kv)
		up := r.read(lp+"ffn_up.weight", c.DModel, 2*c.DFF)
		if r.err != nil {
			return nil, r.err
		}
		rows := func(w []float32, in, from, to int) linear {
			return linear{in: in, out: to - from, w: w[from*in : to*in]}
		}
		m.layers = append(m.layers, layer{
			attnNorm: r.read(lp+"attn_norm.weight", c.DModel),
			wq:       rows(qkv, c.DModel, 0, c.DModel),
			wk:       rows(qkv, c.DModel, c.DModel, c.DModel+kv),
			wv:       rows(qkv, c.DModel, c.DModel+kv, c.DModel+2*kv),
			wo:       r.linear(lp+"attn_output", c.DModel, c.DModel),
			ffnNorm:  r.read(lp+"ffn_norm.weight", c.DModel),
			gate:     rows(up, c.DModel, 0, c.DFF),
			up:       rows(up, c.DModel, c.DFF, 2*c.DFF),
			down:     r.linear(lp+"ffn_down", c.DFF, c.DModel),
		})
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// loadShape reads the hyperparameters that every architecture has, under
// the key prefix a ("llama.", "gpt2.", ...), with the keys and defaults of
// llama.cpp's load_hparams: block count, d_model, d_ff and heads, then the
// key/value heads (default: all heads) and the head width (default
// d_model/heads; values as wide as keys). withCtx also requires the
// training context length.
func loadShape(f *models.File, a string, withCtx bool) (Config, error) {
	var c Config
	var err error
	required := func(key string) int {
		v, ok := f.Uint(key)
		if !ok && err == nil {
			err = fmt.Errorf("metadata %s is missing or not a single non-negative integer", key)
		}
		return int(v)
	}
	c.NLayer = required(a + "block_count")
	c.DModel = required(a + "embedding_length")
	c.DFF = required(a + "feed_forward_length")
	c.NHead = required(a + "attention.head_count")
	if withCtx {
		c.NCtxTrain = required(a + "context_length")
	}
	if err != nil {
		return c, err
	}
	if c.NHead == 0 {
		return c, fmt.Errorf("%sattention.head_count is 0", a)
	}
	c.NHeadKV = optionalUint(f, a+"attention.head_count_kv", c.NHead)
	if c.NHeadKV == 0 || c.NHead%c.NHeadKV != 0 {
		return c, fmt.Errorf("%d query heads cannot share %d kv heads evenly", c.NHead, c.NHeadKV)
	}
	c.DHead = optionalUint(f, a+"attention.key_length", c.DModel/c.NHead)
	if dv := optionalUint(f, a+"attention.value_length", c.DHead); dv != c.DHead {
		return c, fmt.Errorf("key head width %d differs from value head width %d", c.DHead, dv)
	}
	return c, nil
}

// optionalUint returns the integer metadata value key, or def when the file
// has none.
func optionalUint(f *models.File, key string, def int) int {
	if v, ok := f.Uint(key); ok {
		return int(v)
	}
	return def
}

// nVocab returns the vocabulary size: the rows of token_embd.weight.
func nVocab(f *models.File) (int, error) {
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Dims) != 2 {
		return 0, fmt.Errorf("no 2-dimensional tensor token_embd.weight")
	}
	return int(emb.Dims[1]), nil
}

// readUnembed reads output.weight (and output.bias, when the file has one)
// as W_U. Without output.weight, unless untied, the model is tied: W_U is
// the token embedding, still with output.bias when the file has one (as
// llama.cpp's qwen2 graph adds it).
func (m *Model) readUnembed(r *reader, untied bool) {
	c := m.Config
	if _, ok := r.f.Tensor("output.weight"); ok || untied {
		m.unembed = r.linear("output", c.DModel, c.NVocab)
	} else {
		m.TiedEmbeddings = true
		m.unembed = linear{in: c.DModel, out: c.NVocab, w: m.tokEmbd}
		if _, ok := r.f.Tensor("output.bias"); ok {
			m.unembed.b = r.read("output.bias", c.NVocab)
		}
	}
}

// readRopeFreqs reads rope_freqs.weight, the per-frequency RoPE factors of
// Llama 3.1 and 3.2 (llama3 RoPE scaling, written by llama.cpp's convert
// script): one divisor of the angle per rotated pair, nRot/2 values, each
// positive and finite. llama.cpp's llama graph passes the one tensor to
// ggml_rope_ext as freq_factors in every layer.
func readRopeFreqs(r *reader, nRot int) ([]float32, error) {
	v := r.read("rope_freqs.weight", nRot/2)
	if r.err != nil {
		return nil, fmt.Errorf("per-frequency RoPE factors: %w (one factor per rotated pair of the %d-wide head)", r.err, nRot)
	}
	for i, x := range v {
		if !(x > 0) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("per-frequency RoPE factor rope_freqs.weight[%d] is %g, want a positive finite divisor of the angle", i, x)
		}
	}
	return v, nil
}

// ropeFreqScale returns the freq_scale by which llama.cpp multiplies every
// RoPE angle of a model with keys under the prefix a ("llama.", ...), or
// 0 when that is 1 (no scaling, as Config.RopeFreqScale writes it),
// computed as llama_model::load_hparams and llama_context do with the
// default context parameters (rope_freq_scale 0: the file's):
//
//   - rope.scaling.type, default "linear": "none" never scales
//     (llama_context sets cparams.rope_freq_scale = 1 whatever the factor);
//     "linear" scales by 1/factor; "yarn" and "longrope" are refused, as
//     is any other value (llama.cpp aborts on it);
//   - the factor is rope.scaling.factor, or, when the file has none, the
//     old key rope.scale_linear; absent or 0 means 1 (no scaling). It is
//     computed as llama.cpp's float 1.0f/ropescale, so that factor 8 gives
//     exactly 0.125;
//   - rope.scaling.attn_factor, which multiplies the cos and sin of every
//     rotation (ggml's mscale), is refused unless it is 1.
//
// Every architecture's llama.cpp graph passes this freq_scale to
// ggml_rope_ext in every layer (ggml_rope_cache_init: theta = freq_scale ·
// pos · base^(−2i/n_rot), divided by rope_freqs.weight where llama has
// it), except gemma3's sliding-window layers: load_hparams sets their
// rope_freq_scale_train_swa to 1 (and base to 10000), and
// llama_model::get_rope_freq_scale gives the sliding-window layers that
// value (see loadGemma).
func ropeFreqScale(f *models.File, a string) (float64, error) {
	t := "linear"
	if v, ok := f.String(a + "rope.scaling.type"); ok {
		t = v
	}
	switch t {
	case "none", "linear":
	default:
		return 0, fmt.Errorf("RoPE scaling type %q (%srope.scaling.type) is not supported: the reference implements plain RoPE and linear scaling (none, linear)", t, a)
	}
	key := a + "rope.scaling.factor"
	factor, ok := metaFloat(f, key)
	if !ok {
		key = a + "rope.scale_linear"
		factor, _ = metaFloat(f, key)
	}
	if factor != 0 && !models.ValidRopeFactor(factor) {
		return 0, fmt.Errorf("RoPE scaling factor %s = %g must be 0 (no scaling) or a positive finite factor whose inverse is a finite float32", key, factor)
	}
	if v, ok := metaFloat(f, a+"rope.scaling.attn_factor"); ok && v != 1 {
		return 0, fmt.Errorf("RoPE attention factor %srope.scaling.attn_factor = %g is not supported (it scales the rotated queries and keys; the reference implements 1)", a, v)
	}
	if t == "none" || factor == 0 || factor == 1 {
		return 0, nil // Config.RopeFreqScale's "no scaling"
	}
	return float64(1 / float32(factor)), nil
}

// metaFloat returns a float metadata value exactly as stored: a float32 such as
// the eps 1e-5 is 9.99999975e-06, the value llama.cpp computes with.
func metaFloat(f *models.File, key string) (float64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// reader decodes tensors and keeps the first error, so that load can list
// the tensors it needs without checking after each one.
type reader struct {
	f   *models.File
	err error
}

// read returns the named tensor as float32, checking that its shape (ggml
// order, row length first) is dims.
func (r *reader) read(name string, dims ...int) []float32 {
	if r.err != nil {
		return nil
	}
	t, ok := r.f.Tensor(name)
	if !ok {
		r.err = fmt.Errorf("tensor %s is missing", name)
		return nil
	}
	want := make([]uint64, len(dims))
	n := 1
	for i, d := range dims {
		want[i] = uint64(d)
		n *= d
	}
	if !slices.Equal(t.Dims, want) {
		r.err = fmt.Errorf("tensor %s has shape %v, want %v", name, t.Dims, want)
		return nil
	}
	raw, err := r.f.ReadTensor(name)
	if err != nil {
		r.err = err
		return nil
	}
	v, err := dequantize(t.Type, raw, n)
	if err != nil {
		r.err = fmt.Errorf("tensor %s: %w", name, err)
	}
	return v
}

// linear reads prefix.weight, of ggml shape [in, out], and prefix.bias, of
// shape [out], when the file has it.
func (r *reader) linear(prefix string, in, out int) linear {
	l := linear{in: in, out: out, w: r.read(prefix+".weight", in, out)}
	if _, ok := r.f.Tensor(prefix + ".bias"); ok {
		l.b = r.read(prefix+".bias", out)
	}
	return l
}
