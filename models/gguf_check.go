package models

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SupportedArchitectures lists the general.architecture values lldiff can
// run.
var SupportedArchitectures = []string{"llama", "gpt2", "gptneox", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"}

// archHints says what a file of an unsupported architecture probably is.
var archHints = map[string]string{
	"bert":         "a BERT encoder (embedding model)",
	"nomic-bert":   "a BERT encoder (embedding model)",
	"jina-bert-v2": "a BERT encoder (embedding model)",
	"clip":         "a CLIP vision encoder (multimodal projector)",
	"t5":           "an encoder-decoder model",
	"t5encoder":    "an encoder model",
	// written by lldiff contrast --export-cvec or llama.cpp's
	// cvector-generator
	"controlvector": "a control vector, not a model (steer takes it with --cvec)",
}

// maxProblems is how many problems a CheckRunnable error lists.
const maxProblems = 6

// CheckRunnable checks that f holds a model lldiff can run: a supported
// architecture, weights, the hyperparameters llama.cpp requires with the
// types it requires and values it can compute with, a vocabulary that
// passes CheckVocab, and every required tensor with the shape the
// hyperparameters imply. Problems are reported in one *FormatError. It is
// the one validation before llama.cpp loads a model: llama.cpp itself
// asserts, aborts or reads out of bounds on much of what it refuses.
func (f *File) CheckRunnable() error {
	arch := f.Architecture()
	if arch == "" {
		return &FormatError{Path: f.Path, Problem: "no general.architecture key: the file does not say what model it holds", Fix: fixNotGGUF}
	}
	if !slices.Contains(SupportedArchitectures, arch) {
		p := fmt.Sprintf("architecture %q is not supported", arch)
		if h, ok := archHints[arch]; ok {
			p += ": the file is " + h
		}
		return &FormatError{Path: f.Path, Problem: p,
			Fix: "lldiff runs decoder-only language models; supported architectures: " + strings.Join(SupportedArchitectures, ", ")}
	}
	if len(f.Tensors) == 0 {
		return &FormatError{Path: f.Path, Problem: "has no tensors: it is a vocab-only GGUF (a tokenizer without weights)",
			Fix: "pass a model file with weights, or use this file as the vocabulary of a synthetic model"}
	}
	if err := f.checkLayout(); err != nil {
		return err
	}
	var c checker
	switch arch {
	case "llama", "qwen2", "qwen3":
		c.rmsArch(f, arch)
	case "gpt2", "gptneox":
		c.layerNormArch(f, arch)
	case "phi3":
		c.phi3Arch(f)
	case "gemma2", "gemma3":
		c.gemmaArch(f, arch)
	}
	return c.err(f)
}

// checkLayout checks that the tensor data is laid out as llama.cpp's GGUF
// reader requires: in table order, each tensor at the aligned end of the one
// before.
func (f *File) checkLayout() error {
	var want uint64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset != want {
			return &FormatError{Path: f.Path,
				Problem: fmt.Sprintf("tensor %q has data offset %d, but llama.cpp requires the tensors packed in table order, which puts it at %d", t.Name, t.Offset, want),
				Fix:     "rewrite the file with a GGUF writer that packs tensors, such as llama.cpp's gguf-py"}
		}
		want += alignUp(t.Size, f.Alignment)
	}
	return nil
}

func alignUp(n, a uint64) uint64 {
	if r := n % a; r != 0 {
		return n + a - r
	}
	return n
}

// checker collects problems: the first maxProblems, and a count.
type checker struct {
	problems []string
	n        int
	tensors  map[string]*TensorInfo
	// used holds the tensors tensor and optional looked at
	used map[string]bool
	// what starts the error's Problem; "cannot run this model" when empty
	what string
	// fix is the Fix of the first problem that came with one
	fix string
}

const fixReconvert = "the file is incomplete or was converted for another program; convert it again with llama.cpp"

func (c *checker) addf(format string, args ...any) {
	c.n++
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// addFix adds a problem that has a more specific fix than fixReconvert.
func (c *checker) addFix(fix, format string, args ...any) {
	if c.fix == "" {
		c.fix = fix
	}
	c.addf(format, args...)
}

func (c *checker) err(f *File) error {
	if c.n == 0 {
		return nil
	}
	more := ""
	if c.n > len(c.problems) {
		more = fmt.Sprintf("; and %d more problems", c.n-len(c.problems))
	}
	what, fix := c.what, c.fix
	if what == "" {
		what = "cannot run this model"
	}
	if fix == "" {
		fix = fixReconvert
	}
	return &FormatError{Path: f.Path, Problem: what + ": " + strings.Join(c.problems, "; ") + more, Fix: fix}
}

// requireType checks the GGUF type of a key as llama.cpp's loader does: it
// rejects an int32 where it wants a uint32. perLayer also allows an array
// with one value per layer.
func (c *checker) requireType(f *File, key string, want ggufType, required, perLayer bool) {
	v, ok := f.Get(key)
	if !ok {
		if required {
			c.addf("missing metadata key %s", key)
		}
		return
	}
	t, _ := ggufTypeOf(v)
	if t.elem == want && (!t.array || perLayer) {
		return
	}
	c.addf("metadata key %s has type %s, llama.cpp requires %s", key, valueTypeName(v), want)
}

// tensor checks that the tensor name exists with the given dims.
func (c *checker) tensor(f *File, name string, dims ...int) {
	if c.tensors == nil {
		c.tensors = make(map[string]*TensorInfo, len(f.Tensors))
		for i := range f.Tensors {
			c.tensors[f.Tensors[i].Name] = &f.Tensors[i]
		}
	}
	t, ok := c.tensors[name]
	if !ok {
		c.addf("missing tensor %s", name)
		return
	}
	if c.used == nil {
		c.used = map[string]bool{}
	}
	c.used[name] = true
	if len(t.Dims) != len(dims) {
		c.addf("tensor %s has shape %v, want %v", name, t.Dims, dims)
		return
	}
	for i, d := range dims {
		if t.Dims[i] != uint64(d) {
			c.addf("tensor %s has shape %v, want %v", name, t.Dims, dims)
			return
		}
	}
}

// requireHParams checks the types of the hyperparameters every supported
// architecture has (keys under a, such as "llama."), with normEps the key
// of its norm epsilon, and of the optional ones llama.cpp reads for every
// architecture (it throws on a wrong type).
func (c *checker) requireHParams(f *File, a, normEps string) {
	c.requireType(f, a+"context_length", ggufUint32, true, false)
	c.requireType(f, a+"embedding_length", ggufUint32, true, false)
	c.requireType(f, a+"block_count", ggufUint32, true, false)
	c.requireType(f, a+"feed_forward_length", ggufUint32, true, true)
	c.requireType(f, a+"attention.head_count", ggufUint32, true, true)
	c.requireType(f, a+"attention.head_count_kv", ggufUint32, false, true)
	c.requireType(f, a+normEps, ggufFloat32, true, false)
	c.requireType(f, a+"attention.key_length", ggufUint32, false, false)
	c.requireType(f, a+"attention.value_length", ggufUint32, false, false)
	for _, k := range expertKeys {
		c.requireType(f, a+k, ggufUint32, false, false)
	}
	c.requireType(f, a+"rope.freq_base", ggufFloat32, false, false)
	c.requireType(f, a+"rope.scaling.type", ggufString, false, false)
	c.requireType(f, a+"rope.scaling.factor", ggufFloat32, false, false)
	c.requireType(f, a+"rope.scale_linear", ggufFloat32, false, false)
	c.requireType(f, a+"rope.scaling.attn_factor", ggufFloat32, false, false)
	c.requireType(f, a+"rope.scaling.original_context_length", ggufUint32, false, false)
	c.requireType(f, a+"rope.scaling.finetuned", ggufBool, false, false)
}

// info returns f's Info and checks its vocabulary (as CheckVocab) and the
// values of its hyperparameters; it returns nil, with the problem added,
// when the Info cannot be read or there is no vocabulary to check the
// tensors against.
func (c *checker) info(f *File, normEps string) *Info {
	in, err := f.Info()
	if err != nil {
		c.addf("%s", problemOf(err))
		return nil
	}
	if c.vocab(f) == 0 {
		return nil
	}
	c.hparams(f, in, normEps)
	return in
}

// layerDims returns the head counts and feed-forward length of layer il of
// arch (one value for all layers, or a per-layer array) and checks them;
// ok is false after a problem. With spanDModel the heads must span d_model,
// as the gpt2 and gptneox graphs need.
func (c *checker) layerDims(f *File, in *Info, arch string, il int, spanDModel bool) (nHead, nKV, dff int, ok bool) {
	a := arch + "."
	nHead, err1 := f.layerUint(a+"attention.head_count", il, 0)
	nKV, err2 := f.layerUint(a+"attention.head_count_kv", il, nHead)
	dff, err3 := f.layerUint(a+"feed_forward_length", il, 0)
	if err := firstErr(err1, err2, err3); err != nil {
		c.addf("%s", problemOf(err))
		return 0, 0, 0, false
	}
	if nHead <= 0 || nKV <= 0 || nHead%nKV != 0 {
		c.addf("layer %d has %d heads and %d key/value heads; both must be positive and the first a multiple of the second", il, nHead, nKV)
		return 0, 0, 0, false
	}
	if spanDModel && nHead*in.DHead != in.DModel {
		c.addf("layer %d has %d heads of %d, not d_model %d: the %s graph needs them equal", il, nHead, in.DHead, in.DModel, arch)
		return 0, 0, 0, false
	}
	if dff <= 0 {
		c.addf("layer %d has feed_forward_length %d", il, dff)
		return 0, 0, 0, false
	}
	return nHead, nKV, dff, true
}

// rmsArch checks a llama or qwen2 file as llama.cpp's loader reads it
// (load_hparams and load_tensors for LLM_ARCH_LLAMA and LLM_ARCH_QWEN2):
// RMSNorm weights, separate Q, K and V matrices, a SwiGLU MLP, rotary
// embeddings over whole heads. llama takes optional biases on every
// matrix and RoPE frequency factors; qwen2 takes optional biases on Q, K
// and V only (Qwen2 has them), an optional output.bias, and query heads
// that span d_model (its loader gives attn_q and attn_output the shape
// [d_model, d_model]). qwen3 (LLM_ARCH_QWEN3) has no biases, requires
// the per-head norms attn_q_norm and attn_k_norm of the head width, and
// its heads need not span d_model.
func (c *checker) rmsArch(f *File, arch string) {
	a := arch + "."
	c.requireHParams(f, a, "attention.layer_norm_rms_epsilon")
	c.requireType(f, a+"rope.dimension_count", ggufUint32, false, false)
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
		// Each layer has 9 tensors: the count is absurd, and looking
		// for each layer's tensors could take long.
		c.addf("block_count %d is absurd for a file of %d tensors (a layer has 9)", in.NLayer, len(f.Tensors))
		return
	}
	c.valueLength(f, in)
	if in.DHead <= 0 {
		c.addf("head dimension is 0")
		return
	}
	if in.RopeDim > in.DHead || in.RopeDim%2 != 0 {
		c.addf("rope.dimension_count %d must be even and at most the head dimension %d", in.RopeDim, in.DHead)
	} else if in.RopeDim != in.DHead {
		// llama.cpp throws "invalid n_rot" for llama, and its llama and
		// qwen2 graphs assert it
		c.addf("%srope.dimension_count %d differs from the head dimension %d: llama.cpp's %s graph rotates whole heads", a, in.RopeDim, in.DHead, arch)
	}
	if c.n > 0 {
		return
	}

	c.tensor(f, "token_embd.weight", in.DModel, in.NVocab)
	c.tensor(f, "output_norm.weight", in.DModel)
	if _, ok := c.tensors["output.weight"]; ok {
		c.tensor(f, "output.weight", in.DModel, in.NVocab)
	}
	if arch == "qwen2" {
		c.optional(f, "output.bias", in.NVocab)
	}
	for il := range in.NLayer {
		nHead, nKV, dff, ok := c.layerDims(f, in, arch, il, arch == "qwen2")
		if !ok {
			return
		}
		p := fmt.Sprintf("blk.%d.", il)
		c.tensor(f, p+"attn_norm.weight", in.DModel)
		if arch == "qwen3" {
			c.tensor(f, p+"attn_q_norm.weight", in.DHead)
			c.tensor(f, p+"attn_k_norm.weight", in.DHead)
		}
		c.tensor(f, p+"attn_q.weight", in.DModel, nHead*in.DHead)
		c.tensor(f, p+"attn_k.weight", in.DModel, nKV*in.DHead)
		c.tensor(f, p+"attn_v.weight", in.DModel, nKV*in.DHead)
		c.tensor(f, p+"attn_output.weight", nHead*in.DHead, in.DModel)
		c.tensor(f, p+"ffn_norm.weight", in.DModel)
		c.tensor(f, p+"ffn_gate.weight", in.DModel, dff)
		c.tensor(f, p+"ffn_up.weight", in.DModel, dff)
		c.tensor(f, p+"ffn_down.weight", dff, in.DModel)
		if arch == "qwen3" {
			continue // no optional tensors
		}
		// the optional biases of llama.cpp's loader, with its shapes
		c.optional(f, p+"attn_q.bias", in.DModel)
		c.optional(f, p+"attn_k.bias", nKV*in.DHead)
		c.optional(f, p+"attn_v.bias", nKV*in.DHead)
		if arch == "qwen2" {
			continue
		}
		c.optional(f, p+"attn_output.bias", in.DModel)
		c.optional(f, p+"ffn_gate.bias", dff)
		c.optional(f, p+"ffn_down.bias", in.DModel)
		c.optional(f, p+"ffn_up.bias", dff)
	}
	if arch == "llama" {
		if t, _ := f.String(a + "rope.scaling.type"); t == "longrope" {
			c.optional(f, "rope_factors_long.weight", in.RopeDim/2)
			c.optional(f, "rope_factors_short.weight", in.RopeDim/2)
		} else {
			c.optional(f, "rope_freqs.weight", in.RopeDim/2)
		}
	}
	c.unused(f, in)
}

// optional checks the shape of a tensor llama.cpp loads when the file has
// it.
func (c *checker) optional(f *File, name string, dims ...int) {
	if _, ok := c.tensors[name]; ok {
		c.tensor(f, name, dims...)
	}
}

// unused reports the tensors that tensor and optional did not look at:
// llama.cpp refuses a file with a tensor it does not load.
func (c *checker) unused(f *File, in *Info) {
	if c.n > 0 {
		return
	}
	for _, t := range f.Tensors {
		if !c.used[t.Name] {
			c.addf("tensor %s is not part of a %d-layer %s model, and llama.cpp refuses a file with tensors it does not use", t.Name, in.NLayer, in.Arch)
		}
	}
}

// problemOf returns the Problem of a *FormatError, or the error text.
func problemOf(err error) string {
	var fe *FormatError
	if errors.As(err, &fe) {
		return fe.Problem
	}
	return err.Error()
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
