package models

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"sync"
)

// SynthSpec describes a synthetic model: random weights of any shape and
// type, with the tokenizer of a real vocabulary file.
type SynthSpec struct {
	// Arch is "llama" (the default when empty), "gpt2" (LayerNorm, learned
	// positions, biases, fused QKV), "gptneox" (Pythia: as gpt2 but with
	// partial NEOX rotary embeddings instead of learned positions, an
	// untied output matrix, and attention and MLP in parallel), "qwen2"
	// (llama with biases on Q, K and V, NEOX rotary embeddings and the
	// tokenizer pre-type "qwen2"), "qwen3" (as qwen2 without the biases,
	// with an RMSNorm of each query and key head before RoPE) or "phi3"
	// (llama with one fused Q|K|V matrix, attn_qkv, one fused gate|up
	// matrix, ffn_up of 2·d_ff rows, and NEOX rotary embeddings) or
	// "gemma2" (Gemma 2: embeddings scaled by √d_model, RMSNorms after
	// attention and after the MLP as well as before, a GELU-gated MLP,
	// attention and final logit soft-capping, sliding-window attention in
	// every other layer, always tied) or "gemma3" (as gemma2 with an
	// RMSNorm of each query and key head, no attention soft-cap, five
	// sliding-window layers with rope base 10000 to each global one, which
	// uses RopeBase and RopeScaleLinear).
	Arch string
	Name string // general.name; default "synthetic-<arch>-<layers>x<d_model>-<type>"

	NLayer  int
	DModel  int
	NHead   int
	NHeadKV int // default NHead
	// HeadDim is the width of one attention head (qwen3 and gemma2 only;
	// default DModel/NHead): their heads need not span d_model
	// (Qwen3-0.6B has 16 heads of 128 over d_model 1024, Gemma-2-2B 8 of
	// 256 over 2304). It is written as attention.key_length and
	// attention.value_length.
	HeadDim int
	DFF     int
	NCtx    int // context_length; default 2048

	// VocabPath is a GGUF file whose tokenizer.* metadata is copied, such as
	// the vocab-only testdata/models/vocab/ggml-vocab-llama-spm.gguf. When it
	// is empty the architecture's own shipped vocabulary, compiled into the
	// binary, is used (see SynthVocab and ShippedVocab). The vocabulary size is its token count.
	VocabPath string
	// VocabSize pads the vocabulary to this many tokens (0: its own
	// size), as Gemma's 256k and Qwen's 152k vocabularies are larger than
	// the shipped ones: the added tokens are "<unused_N>", of token type
	// UNUSED and score 0, which no tokenizer produces from text, so that
	// tokenization is unchanged and only the embedding and output matrices
	// (and the lens's cost) grow.
	VocabSize int

	// Type of the weight matrices: F32 (the zero value), F16, Q8_0 or Q4_0.
	// Norm weights are always F32.
	Type GGMLType
	// Untied writes a separate output.weight; by default the model is tied
	// and token_embd.weight is also the unembedding.
	Untied bool

	Seed      uint64
	RopeBase  float64 // default 10000 (llama, gptneox), 1000000 (qwen2, qwen3)
	NormEps   float64 // default 1e-5 (gemma2: 1e-6)
	Overwrite bool    // replace an existing file

	// RopeDim is the number of rotated dimensions of each head (gptneox
	// only; llama rotates all of them): default a quarter of the head, as
	// in Pythia (rotary_pct 0.25).
	RopeDim int
	// SequentialResidual writes gptneox.use_parallel_residual = false
	// (gptneox only): the MLP then reads resid_pre + attn_out as in GPT-2.
	SequentialResidual bool
	// Llama3Rope writes rope_freqs.weight (llama only), the per-frequency
	// RoPE factors of Llama 3.1 and 3.2, computed as llama.cpp's
	// convert_hf_to_gguf.py does for rope_scaling type "llama3" with
	// Llama 3.1's factor 8, low_freq_factor 1, high_freq_factor 4 and
	// original_max_position_embeddings 8192 (see Llama3RopeFreqs), and
	// makes the rope base default to Llama 3's 500000.
	Llama3Rope bool

	// SlidingWindow, AttnSoftcap and FinalSoftcap are gemma2's
	// attention.sliding_window (default 4096), attn_logit_softcapping
	// (default 50) and final_logit_softcapping (default 30), Gemma 2's
	// values. gemma3 takes SlidingWindow (default 512, Gemma-3-1B's) and
	// FinalSoftcap (default none, as Gemma 3).
	SlidingWindow int
	AttnSoftcap   float64
	FinalSoftcap  float64

	// RopeScaleLinear is a linear RoPE scaling factor (every architecture
	// with RoPE, not gpt2; 0, the default, writes none): written as
	// <arch>.rope.scaling.type = "linear" and <arch>.rope.scaling.factor,
	// as llama.cpp's convert_hf_to_gguf.py does for Gemma 3 4B, 12B and
	// 27B (factor 8). llama.cpp multiplies the RoPE angles by 1/factor in
	// every layer, except gemma3's sliding-window layers, which it never
	// scales.
	RopeScaleLinear float64
}

// synthPresets are the named shapes of SynthPreset.
var synthPresets = map[string]SynthSpec{
	"tiny":      {NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, DFF: 128, NCtx: 512, Type: F32},
	"small":     {NLayer: 4, DModel: 256, NHead: 8, NHeadKV: 4, DFF: 704, NCtx: 1024, Type: F16},
	"bench-cpu": {NLayer: 16, DModel: 2048, NHead: 16, NHeadKV: 16, DFF: 5632, NCtx: 2048, Type: Q8_0},
	"llama2-7b": {NLayer: 32, DModel: 4096, NHead: 32, NHeadKV: 32, DFF: 11008, NCtx: 4096, Type: Q4_0, Untied: true},

	// Mistral 7B v0.3 is the llama architecture: 4 query heads per KV
	// head, rope base 1e6, no sliding window
	"mistral-tiny":     {NLayer: 2, DModel: 64, NHead: 8, NHeadKV: 2, DFF: 224, NCtx: 512, Type: F32, Untied: true, RopeBase: 1e6},
	"mistral-7b-shape": {NLayer: 32, DModel: 4096, NHead: 32, NHeadKV: 8, DFF: 14336, NCtx: 32768, Type: Q4_0, Untied: true, RopeBase: 1e6},

	"gpt2-small":  {Arch: "gpt2", NLayer: 12, DModel: 768, NHead: 12, NHeadKV: 12, DFF: 3072, NCtx: 1024, Type: F16},
	"pythia-70m":  {Arch: "gptneox", NLayer: 6, DModel: 512, NHead: 8, NHeadKV: 8, DFF: 2048, NCtx: 2048, Type: F16, Untied: true},
	"pythia-160m": {Arch: "gptneox", NLayer: 12, DModel: 768, NHead: 12, NHeadKV: 12, DFF: 3072, NCtx: 2048, Type: F16, Untied: true},

	"qwen2-tiny": {Arch: "qwen2", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, DFF: 128, NCtx: 512, Type: F32, Untied: true},
	"qwen2-0.5b": {Arch: "qwen2", NLayer: 24, DModel: 896, NHead: 14, NHeadKV: 2, DFF: 4864, NCtx: 32768, Type: Q8_0, VocabSize: 151936},

	"qwen3-tiny":       {Arch: "qwen3", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 512, Type: F32},
	"qwen3-0.6b-shape": {Arch: "qwen3", NLayer: 28, DModel: 1024, NHead: 16, NHeadKV: 8, HeadDim: 128, DFF: 3072, NCtx: 40960, Type: Q8_0, VocabSize: 151936},

	"gemma2-tiny":     {Arch: "gemma2", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 512, Type: F32, SlidingWindow: 8},
	"gemma2-2b-shape": {Arch: "gemma2", NLayer: 26, DModel: 2304, NHead: 8, NHeadKV: 4, HeadDim: 256, DFF: 9216, NCtx: 8192, Type: Q8_0, VocabSize: 256000},

	"gemma3-tiny":     {Arch: "gemma3", NLayer: 6, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 512, Type: F32, SlidingWindow: 8},
	"gemma3-1b-shape": {Arch: "gemma3", NLayer: 26, DModel: 1152, NHead: 4, NHeadKV: 1, HeadDim: 256, DFF: 6912, NCtx: 32768, Type: Q8_0, VocabSize: 262144},
	// Gemma 3 4B's text model (google/gemma-3-4b-pt's text_config):
	// window 1024, rope base 1e6 with linear scaling 8 in the global
	// layers, 10000 unscaled in the sliding-window ones
	"gemma3-4b-shape": {Arch: "gemma3", NLayer: 34, DModel: 2560, NHead: 8, NHeadKV: 4, HeadDim: 256, DFF: 10240, NCtx: 131072, Type: Q4_0,
		SlidingWindow: 1024, RopeScaleLinear: 8, VocabSize: 262144},

	"phi3-tiny":       {Arch: "phi3", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 4, DFF: 128, NCtx: 512, Type: F32, Untied: true},
	"phi3-mini-shape": {Arch: "phi3", NLayer: 32, DModel: 3072, NHead: 32, NHeadKV: 32, DFF: 8192, NCtx: 4096, Type: Q4_0, Untied: true, VocabSize: 32064},
}

// SynthPresets returns the names SynthPreset knows, sorted.
func SynthPresets() []string {
	names := make([]string, 0, len(synthPresets))
	for n := range synthPresets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SynthPreset returns a named shape:
//
//	tiny         llama, 2 layers, d_model 64, 4 heads (2 kv), d_ff 128, F32
//	small        llama, 4 layers, d_model 256, 8 heads (4 kv), d_ff 704, F16
//	bench-cpu    llama, 16 layers, d_model 2048, 16 heads, d_ff 5632, Q8_0
//	llama2-7b    llama, 32 layers, d_model 4096, 32 heads, d_ff 11008, ctx 4096, Q4_0,
//	             untied output.weight (the shape of Llama 2 7B: 6.74e9 weights)
//	mistral-tiny llama, 2 layers, d_model 64, 8 heads (2 kv), d_ff 224, ctx 512, F32,
//	             untied, rope base 1e6 (Mistral 7B v0.3's head grouping and base)
//	mistral-7b-shape  llama, 32 layers, d_model 4096, 32 heads (8 kv), d_ff 14336,
//	             ctx 32768, Q4_0, untied, rope base 1e6 (the shape of Mistral-7B-v0.3,
//	             with Llama 2's 32000-token vocabulary for its 32768)
//	gpt2-small   gpt2, 12 layers, d_model 768, 12 heads, d_ff 3072, ctx 1024, F16,
//	             tied (the shape of GPT-2 small: 124M weights with its vocabulary)
//	pythia-70m   gptneox, 6 layers, d_model 512, 8 heads, d_ff 2048, ctx 2048, F16
//	pythia-160m  gptneox, 12 layers, d_model 768, 12 heads, d_ff 3072, ctx 2048, F16
//	qwen2-tiny   qwen2, 2 layers, d_model 64, 4 heads (2 kv), d_ff 128, ctx 512, F32,
//	             untied output.weight
//	qwen2-0.5b   qwen2, 24 layers, d_model 896, 14 heads (2 kv), d_ff 4864, ctx 32768,
//	             Q8_0, tied (the shape of Qwen2.5-0.5B, with the GPT-2 vocabulary
//	             padded to Qwen's 151936 tokens)
//	qwen3-tiny   qwen3, 2 layers, d_model 64, 4 heads of 32 (2 kv), d_ff 128, ctx 512,
//	             F32, tied: the heads span twice d_model, as Qwen3's may
//	qwen3-0.6b-shape  qwen3, 28 layers, d_model 1024, 16 heads of 128 (8 kv),
//	             d_ff 3072, ctx 40960, Q8_0, tied (the shape of Qwen3-0.6B, with
//	             the GPT-2 vocabulary padded to Qwen's 151936 tokens)
//	gemma2-tiny  gemma2, 2 layers, d_model 64, 4 heads of 32 (2 kv), d_ff 128, ctx 512,
//	             F32, sliding window 8 (so that short prompts reach past it)
//	gemma2-2b-shape  gemma2, 26 layers, d_model 2304, 8 heads of 256 (4 kv), d_ff 9216,
//	             ctx 8192, Q8_0, window 4096 (the shape of Gemma-2-2B, with Llama 2's
//	             vocabulary padded to Gemma's 256000 tokens)
//	gemma3-tiny  gemma3, 6 layers (5 local, 1 global), d_model 64, 4 heads of 32 (2 kv),
//	             d_ff 128, ctx 512, F32, sliding window 8
//	gemma3-1b-shape  gemma3, 26 layers, d_model 1152, 4 heads of 256 (1 kv), d_ff 6912,
//	             ctx 32768, Q8_0, window 512 (the shape of Gemma-3-1B, with Llama 2's
//	             vocabulary padded to Gemma 3's 262144 tokens)
//	gemma3-4b-shape  gemma3, 34 layers, d_model 2560, 8 heads of 256 (4 kv), d_ff 10240,
//	             ctx 131072, Q4_0, window 1024, linear RoPE scaling 8 in the global
//	             layers (the shape of Gemma-3-4B's text model, with Llama 2's
//	             vocabulary padded to 262144 tokens: 3.2e9 weights in the layers)
//	phi3-tiny    phi3, 2 layers, d_model 64, 4 heads, d_ff 128, ctx 512, F32, untied
//	phi3-mini-shape  phi3, 32 layers, d_model 3072, 32 heads, d_ff 8192, ctx 4096,
//	             Q4_0, untied (the shape of Phi-3-mini-4k: 3.8e9 weights with
//	             its vocabulary; here Llama 2's padded to Phi-3's 32064 tokens)
//
// The type is a default that callers may change. The presets use rope base
// 10000 and norm epsilon 1e-5, except qwen2's and qwen3's: 1000000 and
// 1e-6, as Qwen2.5 and Qwen3; the Pythia shapes rotate a quarter of each head and use the
// parallel residual.
func SynthPreset(name string) (SynthSpec, error) {
	if alias, ok := synthPresetAliases[name]; ok {
		name = alias
	}
	s, ok := synthPresets[name]
	if !ok {
		return SynthSpec{}, fmt.Errorf("unknown synthetic model preset %q (known: %s)", name, strings.Join(SynthPresets(), ", "))
	}
	if s.Arch == "" {
		s.Arch = "llama"
	}
	s.Name = synthName("synthetic-" + name)
	s.RopeBase = 10000
	s.NormEps = 1e-5
	switch s.Arch {
	case "qwen2", "qwen3":
		s.RopeBase, s.NormEps = 1e6, 1e-6
	case "gemma2":
		s.NormEps = 1e-6
	case "gemma3":
		s.RopeBase, s.NormEps = 1e6, 1e-6
	}
	if b := synthPresets[name].RopeBase; b != 0 {
		s.RopeBase = b // Mistral's
	}
	return s, nil
}

// ValidRopeFactor reports whether a RoPE scaling factor x, stored as a
// float32, is positive and finite and so is its float32 inverse
// (llama.cpp's 1.0f/factor). NaN and negative factors are not valid.
func ValidRopeFactor(x float64) bool {
	f := float32(x)
	inv := float64(1 / f)
	return f > 0 && !math.IsInf(float64(f), 0) && !math.IsInf(inv, 0)
}

// synthName returns name with "phi3" written "phi_3": llama.cpp treats a
// vocabulary as Phi-3's own, and requires its <|endoftext|> token, when
// general.name contains "phi3" or "phi-3", and the synthetic phi3 models
// carry Llama 2's vocabulary.
func synthName(name string) string { return strings.ReplaceAll(name, "phi3", "phi_3") }

// synthTypes are the matrix types WriteSynthetic generates.
var synthTypes = []GGMLType{F32, F16, Q8_0, Q4_0}

// normalize fills in defaults and checks the spec.
func (s SynthSpec) normalize() (SynthSpec, error) {
	if s.Arch == "" {
		s.Arch = "llama"
	}
	if _, ok := synthVocabs[s.Arch]; !ok {
		return s, fmt.Errorf("synthetic models of architecture %q are not supported (supported: %s)", s.Arch, strings.Join(synthArchs, ", "))
	}
	if s.Arch == "gptneox" {
		s.Untied = true // llama.cpp requires output.weight for gptneox
	} else if s.RopeDim != 0 || s.SequentialResidual {
		return s, fmt.Errorf("synthetic model: RopeDim and SequentialResidual are gptneox settings, not %s", s.Arch)
	}
	if s.NHeadKV == 0 {
		s.NHeadKV = s.NHead
	}
	if s.NCtx == 0 {
		s.NCtx = 2048
	}
	if s.Llama3Rope && s.Arch != "llama" {
		return s, fmt.Errorf("synthetic model: Llama3Rope is a llama setting, not %s", s.Arch)
	}
	switch {
	case s.RopeScaleLinear != 0 && s.Arch == "gpt2":
		return s, fmt.Errorf("synthetic model: linear RoPE scaling (RopeScaleLinear, synth --rope-scale-linear) scales RoPE, and gpt2 has none (it learns its positions)")
	case s.RopeScaleLinear != 0 && !ValidRopeFactor(s.RopeScaleLinear):
		return s, fmt.Errorf("synthetic model: linear RoPE scaling factor %v must be a positive finite number such as 8 (0 for none)", s.RopeScaleLinear)
	}
	if s.RopeBase == 0 {
		s.RopeBase = 10000
		if s.Llama3Rope {
			s.RopeBase = 500000
		}
		if s.Arch == "qwen2" || s.Arch == "qwen3" || s.Arch == "gemma3" {
			s.RopeBase = 1e6
		}
	}
	if s.NormEps == 0 {
		s.NormEps = 1e-5
		if s.Arch == "gemma2" || s.Arch == "gemma3" {
			s.NormEps = 1e-6 // Gemma's rms_norm_eps
		}
	}
	if s.Arch == "gemma2" {
		s.Untied = false // llama.cpp's gemma2 loader unembeds with token_embd
		if s.SlidingWindow == 0 {
			s.SlidingWindow = 4096
		}
		if s.AttnSoftcap == 0 {
			s.AttnSoftcap = 50
		}
		if s.FinalSoftcap == 0 {
			s.FinalSoftcap = 30
		}
		if s.NLayer == 1 {
			return s, fmt.Errorf("synthetic model: gemma2 needs at least 2 layers (layer 1 is the first global one; llama.cpp aborts without one)")
		}
		if s.SlidingWindow < 0 || !(s.AttnSoftcap > 0) || !(s.FinalSoftcap > 0) || math.IsInf(s.AttnSoftcap+s.FinalSoftcap, 0) {
			return s, fmt.Errorf("synthetic model: sliding window %d and soft-caps %v, %v must be positive", s.SlidingWindow, s.AttnSoftcap, s.FinalSoftcap)
		}
	} else if s.Arch == "gemma3" {
		if s.SlidingWindow == 0 {
			s.SlidingWindow = 512
		}
		if s.NLayer > 0 && s.NLayer < 6 {
			return s, fmt.Errorf("synthetic model: gemma3 with a sliding window needs at least 6 layers (layer 5 is the first global one; llama.cpp aborts without one), not %d", s.NLayer)
		}
		if s.AttnSoftcap != 0 || s.SlidingWindow < 0 || s.FinalSoftcap < 0 || math.IsInf(s.FinalSoftcap, 0) {
			return s, fmt.Errorf("synthetic model: gemma3 has no attention soft-cap, and its sliding window %d and final soft-cap %v must be positive (the cap 0 for none)", s.SlidingWindow, s.FinalSoftcap)
		}
	} else if s.SlidingWindow != 0 || s.AttnSoftcap != 0 || s.FinalSoftcap != 0 {
		return s, fmt.Errorf("synthetic model: SlidingWindow, AttnSoftcap and FinalSoftcap are gemma2 settings, not %s", s.Arch)
	}
	if s.HeadDim != 0 && s.Arch != "qwen3" && s.Arch != "gemma2" && s.Arch != "gemma3" {
		return s, fmt.Errorf("synthetic model: HeadDim is a qwen3, gemma2 and gemma3 setting; the heads of %s span d_model", s.Arch)
	}
	if s.HeadDim == 0 && s.NHead > 0 {
		s.HeadDim = s.DModel / s.NHead
	}
	const limit = 1 << 20
	for _, v := range []struct {
		name string
		v    int
	}{{"NLayer", s.NLayer}, {"DModel", s.DModel}, {"NHead", s.NHead}, {"NHeadKV", s.NHeadKV}, {"HeadDim", s.HeadDim}, {"DFF", s.DFF}, {"NCtx", s.NCtx}} {
		if v.v <= 0 || v.v > limit {
			return s, fmt.Errorf("synthetic model: %s is %d, want 1 to %d", v.name, v.v, limit)
		}
	}
	switch {
	case s.HeadDim*s.NHead != s.DModel && s.Arch != "qwen3" && s.Arch != "gemma2" && s.Arch != "gemma3":
		return s, fmt.Errorf("synthetic model: d_model %d is not a multiple of the %d heads", s.DModel, s.NHead)
	case s.Arch != "gpt2" && s.Arch != "gptneox" && s.HeadDim%2 != 0:
		return s, fmt.Errorf("synthetic model: head dimension %d must be even for rotary embeddings", s.HeadDim)
	case s.NHead%s.NHeadKV != 0:
		return s, fmt.Errorf("synthetic model: %d heads is not a multiple of the %d key/value heads", s.NHead, s.NHeadKV)
	case !(s.RopeBase > 0) || math.IsInf(s.RopeBase, 0):
		return s, fmt.Errorf("synthetic model: rope base %v must be positive", s.RopeBase)
	case !(s.NormEps > 0) || s.NormEps >= 1:
		return s, fmt.Errorf("synthetic model: norm epsilon %v must be in (0, 1)", s.NormEps)
	}
	ok := false
	for _, t := range synthTypes {
		ok = ok || t == s.Type
	}
	if !ok {
		return s, fmt.Errorf("synthetic model: cannot generate weights of type %s (supported: F32, F16, Q8_0, Q4_0)", s.Type)
	}
	if bs := s.Type.BlockSize(); s.DModel%bs != 0 || s.DFF%bs != 0 {
		return s, fmt.Errorf("synthetic model: %s stores rows in blocks of %d, but d_model %d and d_ff %d are not both multiples of %d",
			s.Type, bs, s.DModel, s.DFF, bs)
	}
	if s.Arch == "gptneox" {
		dHead := s.DModel / s.NHead
		if s.RopeDim == 0 {
			s.RopeDim = dHead / 4 &^ 1
		}
		if s.RopeDim <= 0 || s.RopeDim > dHead || s.RopeDim%2 != 0 {
			return s, fmt.Errorf("synthetic model: RopeDim %d must be even and in 2..%d (the head dimension)", s.RopeDim, dHead)
		}
	}
	if s.Name == "" {
		s.Name = synthName(fmt.Sprintf("synthetic-%s-%dx%d-%s", s.Arch, s.NLayer, s.DModel, s.Type))
	}
	return s, nil
}

// WriteSynthetic writes a model of spec.Arch with deterministic random
// weights to path, copying the tokenizer (every tokenizer.* key) from
// spec.VocabPath.
// The same spec, seed included, always gives the same bytes; each tensor's
// values depend only on the seed and the tensor's name.
//
// Matrices are generated directly in spec.Type, with zero mean and standard
// deviation 1/sqrt(row length) (token_embd.weight: 1), so that activations
// stay finite and vary: F32 and F16 values are normal; Q8_0 and Q4_0 blocks
// get uniformly random codes (symmetric about 0) and a scale that varies
// ±25% from block to block around the one that gives that deviation. Norm
// weights are F32, 1 + 0.02·N(0,1). Matrix rows of quantized types must be
// multiples of 32: d_model and d_ff must be. qwen3 adds the per-head
// norms blk.L.attn_{q,k}_norm.weight, F32, 1 + 0.1·N(0,1) (wider than the
// other norms, so that a forgotten one shows). qwen2 adds F32 biases
// blk.L.attn_{q,k,v}.bias of 0.1·N(0,1), so that a forgotten bias shows as
// an error of order 0.1. Llama3Rope adds rope_freqs.weight, F32, the
// factors of Llama3RopeFreqs; RopeScaleLinear the rope.scaling keys. For gpt2 and gptneox, see writeSyntheticLayerNorm
// for the biases and position embeddings.
func WriteSynthetic(path string, spec SynthSpec) error {
	s, err := spec.normalize()
	if err != nil {
		return err
	}
	var vocab *File
	if s.VocabPath == "" {
		vocab, err = ShippedVocab(s.Arch)
	} else {
		vocab, err = Open(s.VocabPath)
	}
	if err != nil {
		return err
	}
	tokens, ok := vocab.Strings("tokenizer.ggml.tokens")
	if !ok || len(tokens) == 0 {
		return &FormatError{Path: s.VocabPath, Problem: "has no tokenizer.ggml.tokens", Fix: "use a GGUF file with a vocabulary, such as llama.cpp's vocab-only models/ggml-vocab-llama-spm.gguf"}
	}
	nVocab := len(tokens)
	if s.VocabSize != 0 {
		if s.VocabSize < nVocab {
			return fmt.Errorf("synthetic model: vocabulary size %d is smaller than the vocabulary's %d tokens; give %d or more, or leave it unset for the vocabulary's own size", s.VocabSize, nVocab, nVocab)
		}
		nVocab = s.VocabSize
	}
	if s.Arch == "gpt2" || s.Arch == "gptneox" {
		return writeSyntheticLayerNorm(path, s, vocab, nVocab)
	}
	dHead := s.HeadDim
	a := s.Arch + "."
	archKVs := []KV{
		{a + "rope.dimension_count", uint32(dHead)},
		{a + "rope.freq_base", float32(s.RopeBase)},
		{a + "attention.layer_norm_rms_epsilon", float32(s.NormEps)},
	}
	if s.Arch == "qwen3" || s.Arch == "gemma2" || s.Arch == "gemma3" {
		archKVs = append(archKVs, KV{a + "attention.key_length", uint32(dHead)}, KV{a + "attention.value_length", uint32(dHead)})
	}
	if s.Arch == "gemma3" {
		archKVs = append(archKVs, KV{a + "attention.sliding_window", uint32(s.SlidingWindow)})
		if s.FinalSoftcap > 0 {
			archKVs = append(archKVs, KV{a + "final_logit_softcapping", float32(s.FinalSoftcap)})
		}
	}
	if s.Arch == "gemma2" {
		archKVs = append(archKVs,
			KV{a + "attention.sliding_window", uint32(s.SlidingWindow)},
			KV{a + "attn_logit_softcapping", float32(s.AttnSoftcap)},
			KV{a + "final_logit_softcapping", float32(s.FinalSoftcap)},
		)
	}
	w, err := newSynthWriter(s, vocab, nVocab, archKVs...)
	if err != nil {
		return err
	}

	d, v, ff := uint64(s.DModel), uint64(nVocab), uint64(s.DFF)
	qDim, kvDim := uint64(s.NHead*dHead), uint64(s.NHeadKV*dHead)
	matrix := w.matrix
	norm := func(name string) error {
		return w.AddTensorFunc(name, F32, []uint64{d}, func(out io.Writer) error {
			return generateNorm(out, d, tensorSeed(s.Seed, name))
		})
	}
	err = errors.Join(
		matrix("token_embd.weight", []uint64{d, v}, 1),
		norm("output_norm.weight"),
	)
	if s.Untied {
		err = errors.Join(err, matrix("output.weight", []uint64{d, v}, 1/math.Sqrt(float64(d))))
	}
	if s.Llama3Rope {
		freqs := Llama3RopeFreqs(s.RopeBase, dHead)
		err = errors.Join(err, w.AddTensorFunc("rope_freqs.weight", F32, []uint64{uint64(len(freqs))}, func(out io.Writer) error {
			return binary.Write(out, binary.LittleEndian, freqs)
		}))
	}
	bias := func(name string, n uint64) error {
		if s.Arch != "qwen2" {
			return nil
		}
		return w.AddTensorFunc(name, F32, []uint64{n}, func(out io.Writer) error {
			return generateVector(out, n, 0, synthBiasSigma, tensorSeed(s.Seed, name))
		})
	}
	headNorm := func(name string) error {
		if s.Arch != "qwen3" && s.Arch != "gemma3" {
			return nil
		}
		return w.AddTensorFunc(name, F32, []uint64{uint64(dHead)}, func(out io.Writer) error {
			return generateVector(out, uint64(dHead), 1, synthHeadNormSigma, tensorSeed(s.Seed, name))
		})
	}
	for il := range s.NLayer {
		p := fmt.Sprintf("blk.%d.", il)
		if s.Arch == "gemma2" || s.Arch == "gemma3" {
			// norms before and after attention and the MLP (Gemma's
			// converter stores 1 + w; so does generateNorm); gemma3's
			// per-head q and k norms as qwen3's
			err = errors.Join(err,
				norm(p+"attn_norm.weight"),
				headNorm(p+"attn_q_norm.weight"),
				headNorm(p+"attn_k_norm.weight"),
				matrix(p+"attn_q.weight", []uint64{d, qDim}, 1/math.Sqrt(float64(d))),
				matrix(p+"attn_k.weight", []uint64{d, kvDim}, 1/math.Sqrt(float64(d))),
				matrix(p+"attn_v.weight", []uint64{d, kvDim}, 1/math.Sqrt(float64(d))),
				matrix(p+"attn_output.weight", []uint64{qDim, d}, 1/math.Sqrt(float64(qDim))),
				norm(p+"post_attention_norm.weight"),
				norm(p+"ffn_norm.weight"),
				matrix(p+"ffn_gate.weight", []uint64{d, ff}, 1/math.Sqrt(float64(d))),
				matrix(p+"ffn_up.weight", []uint64{d, ff}, 1/math.Sqrt(float64(d))),
				matrix(p+"ffn_down.weight", []uint64{ff, d}, 1/math.Sqrt(float64(ff))),
				norm(p+"post_ffw_norm.weight"),
			)
			continue
		}
		if s.Arch == "phi3" {
			// fused Q|K|V rows and fused gate|up rows, as
			// llama.cpp's phi3 loader reads them
			err = errors.Join(err,
				norm(p+"attn_norm.weight"),
				matrix(p+"attn_qkv.weight", []uint64{d, qDim + 2*kvDim}, 1/math.Sqrt(float64(d))),
				matrix(p+"attn_output.weight", []uint64{qDim, d}, 1/math.Sqrt(float64(qDim))),
				norm(p+"ffn_norm.weight"),
				matrix(p+"ffn_up.weight", []uint64{d, 2 * ff}, 1/math.Sqrt(float64(d))),
				matrix(p+"ffn_down.weight", []uint64{ff, d}, 1/math.Sqrt(float64(ff))),
			)
			continue
		}
		err = errors.Join(err,
			norm(p+"attn_norm.weight"),
			headNorm(p+"attn_q_norm.weight"),
			headNorm(p+"attn_k_norm.weight"),
			matrix(p+"attn_q.weight", []uint64{d, qDim}, 1/math.Sqrt(float64(d))),
			matrix(p+"attn_k.weight", []uint64{d, kvDim}, 1/math.Sqrt(float64(d))),
			matrix(p+"attn_v.weight", []uint64{d, kvDim}, 1/math.Sqrt(float64(d))),
			bias(p+"attn_q.bias", qDim),
			bias(p+"attn_k.bias", kvDim),
			bias(p+"attn_v.bias", kvDim),
			matrix(p+"attn_output.weight", []uint64{qDim, d}, 1/math.Sqrt(float64(qDim))),
			norm(p+"ffn_norm.weight"),
			matrix(p+"ffn_gate.weight", []uint64{d, ff}, 1/math.Sqrt(float64(d))),
			matrix(p+"ffn_up.weight", []uint64{d, ff}, 1/math.Sqrt(float64(d))),
			matrix(p+"ffn_down.weight", []uint64{ff, d}, 1/math.Sqrt(float64(ff))),
		)
	}
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}

// Llama3RopeFreqs returns the per-frequency RoPE factors (rope_freqs.weight)
// of a head of nRot rotated dimensions with rope base base, computed as
// llama.cpp's convert_hf_to_gguf.py (LlamaModel.generate_extra_tensors)
// does for rope_scaling type "llama3" with Llama 3.1's parameters (factor
// 8, low_freq_factor 1, high_freq_factor 4, original context 8192): pair i
// has frequency base^(-2i/nRot) and wavelength 2π/frequency; its factor is
// 1 below wavelength 8192/4, 8 above 8192/1, and in between
// 1/((1-smooth)/8 + smooth) with smooth = (8192/wavelength - 1)/(4 - 1).
// llama.cpp divides pair i's angle by factor i. It computes in float64;
// the script's frequencies are float32, so a factor in between may differ
// from a converted file's in its last bit.
func Llama3RopeFreqs(base float64, nRot int) []float32 {
	const factor, lowFreqFactor, highFreqFactor, oldContext = 8.0, 1.0, 4.0, 8192.0
	lowFreqWavelen, highFreqWavelen := oldContext/lowFreqFactor, oldContext/highFreqFactor
	out := make([]float32, nRot/2)
	for i := range out {
		freq := 1 / math.Pow(base, float64(2*i)/float64(nRot))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < highFreqWavelen:
			out[i] = 1
		case wavelen > lowFreqWavelen:
			out[i] = factor
		default:
			smooth := (oldContext/wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
			out[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}

// synthWriter is the Writer of one synthetic model.
type synthWriter struct {
	*Writer
	s SynthSpec
}

// newSynthWriter returns a writer for the model of s that holds its
// metadata: the keys of every architecture, then archKVs, then the
// vocabulary size, the seed and every tokenizer.* key of vocab; for qwen2,
// tokenizer.ggml.pre is "qwen2", the pre-tokenizer of Qwen2's BPE in
// llama.cpp, whatever vocab says.
func newSynthWriter(s SynthSpec, vocab *File, nVocab int, archKVs ...KV) (*synthWriter, error) {
	ftype, _ := FileTypeFor(s.Type)
	a := s.Arch + "."
	kvs := []KV{
		{"general.architecture", s.Arch},
		{"general.name", s.Name},
		{"general.file_type", ftype},
		{"general.alignment", uint32(DefaultAlignment)},
		{a + "context_length", uint32(s.NCtx)},
		{a + "embedding_length", uint32(s.DModel)},
		{a + "block_count", uint32(s.NLayer)},
		{a + "feed_forward_length", uint32(s.DFF)},
		{a + "attention.head_count", uint32(s.NHead)},
		{a + "attention.head_count_kv", uint32(s.NHeadKV)},
	}
	kvs = append(kvs, archKVs...)
	if s.RopeScaleLinear != 0 {
		kvs = append(kvs, KV{a + "rope.scaling.type", "linear"}, KV{a + "rope.scaling.factor", float32(s.RopeScaleLinear)})
	}
	kvs = append(kvs, KV{a + "vocab_size", uint32(nVocab)}, KV{"lldiff.synthetic.seed", s.Seed})
	pre := ""
	if s.Arch == "qwen2" || s.Arch == "qwen3" {
		pre = "qwen2" // convert_hf_to_gguf.py writes it for Qwen3 too
	}
	for _, kv := range vocab.KVs {
		if kv.Key == "tokenizer.ggml.pre" && pre != "" {
			continue
		}
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			kv, err := padVocabKV(kv, nVocab)
			if err != nil {
				return nil, err
			}
			kvs = append(kvs, kv)
		}
	}
	if pre != "" {
		kvs = append(kvs, KV{"tokenizer.ggml.pre", pre})
	}
	w := &synthWriter{Writer: &Writer{Overwrite: s.Overwrite}, s: s}
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// synthPresetAliases are other names of presets, accepted but not listed:
// the -shape spelling of the one preset without it.
var synthPresetAliases = map[string]string{"qwen2-0.5b-shape": "qwen2-0.5b"}

// tokenTypeUnused is llama.cpp's LLAMA_TOKEN_TYPE_UNUSED.
const tokenTypeUnused = 5

// padVocabKV extends the per-token arrays of the tokenizer (tokens, scores,
// token types) to n entries with unused tokens (see SynthSpec.VocabSize);
// other keys, and arrays already n long, are returned as they are. An
// array of another element type than llama.cpp's is an error.
func padVocabKV(kv KV, n int) (KV, error) {
	switch kv.Key {
	case "tokenizer.ggml.tokens":
		return padArray(kv, n, func(k int) string { return fmt.Sprintf("<unused_%d>", k) })
	case "tokenizer.ggml.scores":
		return padArray(kv, n, func(int) float32 { return 0 })
	case "tokenizer.ggml.token_type":
		return padArray(kv, n, func(int) int32 { return tokenTypeUnused })
	}
	return kv, nil
}

// padArray appends fill(0), fill(1), … to kv's []T value until it has n
// entries.
func padArray[T any](kv KV, n int, fill func(k int) T) (KV, error) {
	v, ok := kv.Value.([]T)
	if !ok {
		return kv, fmt.Errorf("synthetic model: cannot pad the vocabulary: %s is a %T, not the array llama.cpp writes; use the vocabulary as it is (VocabSize 0)", kv.Key, kv.Value)
	}
	out := slices.Clip(v)
	for k := 0; len(out) < n; k++ {
		out = append(out, fill(k))
	}
	kv.Value = out
	return kv, nil
}

// matrix adds a matrix of the model's type with random values of standard
// deviation sigma (see generate).
func (w *synthWriter) matrix(name string, dims []uint64, sigma float64) error {
	s := w.s
	return w.AddTensorFunc(name, s.Type, dims, func(out io.Writer) error {
		return generate(out, s.Type, dims[0]*dims[1], sigma, tensorSeed(s.Seed, name))
	})
}

// tensorSeed derives the seed of one tensor from the model seed and the
// tensor name (FNV-1a), so each tensor's values depend on nothing else.
func tensorSeed(seed uint64, name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return seed ^ bits.RotateLeft64(h, 29)
}

// rng is xoshiro256**, seeded through splitmix64.
type rng struct{ s0, s1, s2, s3 uint64 }

func newRNG(seed uint64) rng {
	next := func() uint64 {
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
	return rng{next(), next(), next(), next()}
}

func (r *rng) next() uint64 {
	out := bits.RotateLeft64(r.s1*5, 7) * 9
	t := r.s1 << 17
	r.s2 ^= r.s0
	r.s3 ^= r.s1
	r.s1 ^= r.s2
	r.s0 ^= r.s3
	r.s2 ^= t
	r.s3 = bits.RotateLeft64(r.s3, 45)
	return out
}

// normal returns an approximately standard normal number: the centred sum
// of four 16-bit uniforms (Irwin-Hall), which has variance 1 and lies
// within ±sqrt(12).
func (r *rng) normal() float32 {
	u := r.next()
	s := u&0xffff + u>>16&0xffff + u>>32&0xffff + u>>48
	return (float32(s) - 4*32767.5) * (sqrt3 / 65536)
}

// Standard deviations of the codes that generate writes: Q8_0 codes are
// uniform on -127..127 with 0 twice as likely (256 outcomes), Q4_0 codes
// (nibble-8) uniform on -7..7 with 0 twice as likely (16 outcomes).
var (
	q8CodeStd = math.Sqrt(2 * 127 * 128 * 255 / 6 / 256.0)
	q4CodeStd = math.Sqrt(2 * 7 * 8 * 15 / 6 / 16.0)
)

// chunkBytes is how much generated data is handed to the writer at once.
const chunkBytes = 1 << 20

// generate writes n random elements of type t with standard deviation
// sigma: normal for F32 and F16, random codes and scales for Q8_0 and Q4_0.
func generate(w io.Writer, t GGMLType, n uint64, sigma float64, seed uint64) error {
	r := newRNG(seed)
	bs, ts := uint64(t.BlockSize()), uint64(t.TypeSize())
	perChunk := uint64(chunkBytes) / ts // blocks per chunk
	buf := make([]byte, min(n/bs, perChunk)*ts)
	var scales [256]uint16
	var table *[1 << 16]float32
	var half *[1 << 16]uint16
	switch t {
	case F32:
		table = normalTable(sigma)
	case F16:
		table = normalTable(sigma)
		half = new([1 << 16]uint16)
		for i, v := range table {
			half[i] = Float32ToFloat16(v)
		}
	case Q8_0:
		scales = scaleTable(&r, sigma/q8CodeStd)
	case Q4_0:
		scales = scaleTable(&r, sigma/q4CodeStd)
	}
	for left := n / bs; left > 0; {
		k := min(left, perChunk)
		b := buf[:k*ts]
		switch t {
		case F32:
			fillF32(b, &r, table)
		case F16:
			fillF16(b, &r, half)
		case Q8_0:
			fillQ8_0(b, &r, &scales)
		case Q4_0:
			fillQ4_0(b, &r, &scales)
		default:
			return fmt.Errorf("models: cannot generate %s", t)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		left -= k
	}
	return nil
}

// unitNormal holds the quantiles of the standard normal distribution at
// (i+0.5)/65536: indexed by a uniform 16-bit number, it gives a normal one
// (cut at ±4.2).
var unitNormal = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		p := (float64(i) + 0.5) / (1 << 16)
		t[i] = float32(math.Sqrt2 * math.Erfinv(2*p-1))
	}
	return &t
})

// normalTable returns unitNormal scaled by sigma.
func normalTable(sigma float64) *[1 << 16]float32 {
	t := *unitNormal()
	for i := range t {
		t[i] *= float32(sigma)
	}
	return &t
}

// fillF32 fills b with F32 values drawn from table by uniform 16-bit
// indices, four per random number.
func fillF32(b []byte, r *rng, table *[1 << 16]float32) {
	for i := 0; i+16 <= len(b); i += 16 {
		u := r.next()
		binary.LittleEndian.PutUint32(b[i:], math.Float32bits(table[u&0xffff]))
		binary.LittleEndian.PutUint32(b[i+4:], math.Float32bits(table[u>>16&0xffff]))
		binary.LittleEndian.PutUint32(b[i+8:], math.Float32bits(table[u>>32&0xffff]))
		binary.LittleEndian.PutUint32(b[i+12:], math.Float32bits(table[u>>48]))
	}
	for i := len(b) &^ 15; i < len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], math.Float32bits(table[r.next()&0xffff]))
	}
}

// fillF16 is fillF32 for F16 values.
func fillF16(b []byte, r *rng, table *[1 << 16]uint16) {
	for i := 0; i+8 <= len(b); i += 8 {
		u := r.next()
		binary.LittleEndian.PutUint16(b[i:], table[u&0xffff])
		binary.LittleEndian.PutUint16(b[i+2:], table[u>>16&0xffff])
		binary.LittleEndian.PutUint16(b[i+4:], table[u>>32&0xffff])
		binary.LittleEndian.PutUint16(b[i+6:], table[u>>48])
	}
	for i := len(b) &^ 7; i < len(b); i += 2 {
		binary.LittleEndian.PutUint16(b[i:], table[r.next()&0xffff])
	}
}

// scaleTable returns 256 F16 block scales spread uniformly over ±25% of d,
// normalized so that their mean square is d².
func scaleTable(r *rng, d float64) [256]uint16 {
	var js [256]float64
	var ms float64
	for i := range js {
		js[i] = 0.75 + 0.5*float64(r.next()>>11)/(1<<53)
		ms += js[i] * js[i]
	}
	k := d / math.Sqrt(ms/256)
	var out [256]uint16
	for i, j := range js {
		out[i] = Float32ToFloat16(float32(j * k))
	}
	return out
}

const (
	low7 = 0x7f7f7f7f7f7f7f7f
	msb8 = 0x8080808080808080
	lsb4 = 0x1111111111111111
)

// fillQ8_0 fills whole Q8_0 blocks with random codes (0x80, that is -128,
// becomes 0) and scales from the table.
func fillQ8_0(b []byte, r *rng, scales *[256]uint16) {
	var pick uint64
	for i := 0; i+34 <= len(b); i += 34 {
		if i%(34*8) == 0 {
			pick = r.next()
		}
		binary.LittleEndian.PutUint16(b[i:], scales[pick&0xff])
		pick >>= 8
		for j := 0; j < 4; j++ {
			x := r.next()
			y := x ^ msb8                 // bytes that were 0x80 are now 0
			nz := ((y & low7) + low7) | y // high bit set in the nonzero bytes of y
			x &^= ^nz & msb8
			binary.LittleEndian.PutUint64(b[i+2+8*j:], x)
		}
	}
}

// fillQ4_0 fills whole Q4_0 blocks with random nibbles (0, that is -8,
// becomes 8, that is 0) and scales from the table.
func fillQ4_0(b []byte, r *rng, scales *[256]uint16) {
	var pick uint64
	for i := 0; i+18 <= len(b); i += 18 {
		if i%(18*8) == 0 {
			pick = r.next()
		}
		binary.LittleEndian.PutUint16(b[i:], scales[pick&0xff])
		pick >>= 8
		for j := 0; j < 2; j++ {
			x := r.next()
			zero := ^(x | x>>1 | x>>2 | x>>3) & lsb4 // low bit of each zero nibble
			x |= zero << 3
			binary.LittleEndian.PutUint64(b[i+2+8*j:], x)
		}
	}
}

// generateNorm writes n F32 norm weights 1 + 0.02·N(0,1).
func generateNorm(w io.Writer, n uint64, seed uint64) error {
	r := newRNG(seed)
	b := make([]byte, 4*n)
	for i := uint64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(1+0.02*r.normal()))
	}
	_, err := w.Write(b)
	return err
}

const sqrt3 = 1.7320508075688772935274463415058723669428052538103806280558069794
