package models

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// maxLayers is llama.cpp's LLAMA_MAX_LAYERS: its per-layer hyperparameters
// are fixed arrays of this size.
const maxLayers = 512

// expertKeys are the mixture-of-experts counts llama.cpp reads for every
// architecture; it asserts on inconsistent ones, and lldiff runs dense
// models only.
var expertKeys = []string{"expert_count", "expert_used_count", "expert_group_count", "expert_group_used_count"}

// ropeScalingTypes are the <arch>.rope.scaling.type values llama.cpp knows;
// it aborts on any other.
var ropeScalingTypes = []string{"none", "linear", "yarn", "longrope"}

// perLayerKeys are the hyperparameters that may hold one value per layer.
var perLayerKeys = []string{"feed_forward_length", "attention.head_count", "attention.head_count_kv"}

const fixHParam = "the value is damaged or was set by hand; set it to the value in the original model's config.json with gguf-py's gguf_set_metadata.py, or convert the model again with llama.cpp"

// hparams checks the values of the hyperparameters llama.cpp computes with,
// as llama_model::load_hparams reads them (keys under in.Arch), with
// normEps the key of the norm epsilon. A value it cannot compute with
// makes llama.cpp assert (a negative or NaN epsilon, an unknown RoPE
// scaling type, inconsistent expert counts) or every output NaN (a
// rotary base of 0, NaN or below 0).
func (c *checker) hparams(f *File, in *Info, normEps string) {
	a := in.Arch + "."
	c.positive(f, a+normEps, false, "a small positive number such as 1e-5: ggml aborts on a negative or NaN epsilon, and with 0 a row of zeros divides by zero")
	if !ropelessArchs[in.Arch] {
		c.positive(f, a+"rope.freq_base", false, "a positive base such as 10000: any other makes every rotary angle, and the model's output, NaN")
		c.positive(f, a+"rope.scaling.factor", true, "0 (no scaling) or a positive factor: llama.cpp divides by it")
		c.positive(f, a+"rope.scale_linear", true, "0 (no scaling) or a positive factor: llama.cpp divides by it")
		c.positive(f, a+"rope.scaling.attn_factor", false, "a positive factor such as 1: it scales the rotated queries and keys")
	}
	if t, ok := f.String(a + "rope.scaling.type"); ok && !slices.Contains(ropeScalingTypes, t) {
		c.addFix(fixHParam, "%srope.scaling.type is %q, not one llama.cpp knows (%s): llama.cpp aborts", a, t, strings.Join(ropeScalingTypes, ", "))
	} else if t == "yarn" && in.RopeBase == 1 {
		c.addFix(fixHParam, "%srope.freq_base is 1 with YaRN scaling: YaRN divides by the logarithm of the base, and the output would be NaN", a)
	}
	for _, k := range expertKeys {
		if n, ok := f.Uint(a + k); ok && n != 0 {
			c.addFix("lldiff runs dense "+strings.Join(SupportedArchitectures, ", ")+" models; use a model without experts",
				"%s%s is %d: the file describes a mixture-of-experts model, which lldiff does not run, and llama.cpp aborts on inconsistent expert counts", a, k, n)
			break
		}
	}
	if in.NLayer > 0 && in.NLayer <= maxLayers {
		for _, k := range perLayerKeys {
			v, _ := f.Get(a + k)
			if n := arrayLen(v); n >= 0 && n != in.NLayer {
				c.addf("%s%s has %d per-layer values for block_count %d layers: llama.cpp requires one per layer", a, k, n, in.NLayer)
			}
		}
	}
}

// positive checks that the float32 key, when present, is finite and
// positive (or 0 with zeroOK); want says what it should be and why.
func (c *checker) positive(f *File, key string, zeroOK bool, want string) {
	v, ok := f.Get(key)
	if !ok {
		return
	}
	x, ok := v.(float32)
	if !ok {
		return // requireType reports the type
	}
	d := float64(x)
	switch {
	case math.IsNaN(d) || math.IsInf(d, 0) || d < 0 || d == 0 && !zeroOK:
	case zeroOK && d != 0 && math.IsInf(float64(float32(1/d)), 0):
		// llama.cpp stores 1/factor in a float32
	default:
		return
	}
	c.addFix(fixHParam, "%s is %v; it must be %s", key, x, want)
}

// valueLength checks that the value heads are as wide as the key heads
// (attention.key_length, and attention.value_length or, when that is
// missing, embedding_length / head_count): the llama, gpt2, gptneox and
// qwen2 graphs of llama.cpp assert it.
func (c *checker) valueLength(f *File, in *Info) {
	a := in.Arch + "."
	dv := 0
	if in.NHead > 0 {
		dv = in.DModel / in.NHead
	}
	from := fmt.Sprintf("embedding_length / head_count, as %sattention.value_length is missing", a)
	if v, ok := f.Get(a + "attention.value_length"); ok {
		u, _ := toUint(v)
		dv, from = int(min(u, math.MaxInt32)), a+"attention.value_length"
	}
	if dv != in.DHead {
		c.addf("the value heads are %d wide (%s) but the key heads %d: llama.cpp's %s graph requires them equal", dv, from, in.DHead, in.Arch)
	}
}

// arrayLen returns the length of a per-layer array, or -1 for a scalar
// (or an array of a type requireType reports).
func arrayLen(v any) int {
	switch x := v.(type) {
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	}
	return -1
}
