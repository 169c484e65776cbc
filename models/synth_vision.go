package models

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// SmolVLMTinyPreset names the synthetic vision-language pair that
// WriteSynthVision writes: a tiny llama language model and an mmproj file
// of clip's idefics3 projector (the projector of SmolVLM and SmolVLM2).
const SmolVLMTinyPreset = "smolvlm-tiny"

// VisionSpec describes the mmproj half of a synthetic vision-language pair:
// a SigLIP vision tower and SmolVLM's (idefics3) projector, which merges
// ScaleFactor×ScaleFactor neighbouring patches and maps them to the
// language model's d_model with one matrix. clip.cpp resizes an image so
// that its longer side is at most LongestEdge, cuts it into ImageSize
// tiles (slices) and adds a downscaled overview: every slice and the
// overview become (ImageSize/PatchSize/ScaleFactor)² embeddings.
type VisionSpec struct {
	ImageSize   int // tile side in pixels
	LongestEdge int // clip.vision.preproc_image_size: the longest side after resizing (default ImageSize)
	PatchSize   int
	DModel      int // the vision tower's width
	NHead       int
	DFF         int
	NLayer      int
	ScaleFactor int // clip.vision.projector.scale_factor
	// ProjDim is the width of the embeddings the projector writes; it must
	// be the language model's d_model (set from the LM spec by
	// WriteSynthVision when 0).
	ProjDim int
	NormEps float64
}

// SmolVLMTiny returns the two halves of the smolvlm-tiny preset: the llama
// "tiny" shape for the language model (2 layers, d_model 64) and a vision
// tower of 2 layers of width 32 on 64×64 tiles of 4×4 patches, merged 2×2:
// 64 embeddings per slice, the count SmolVLM's 512×512 tiles give.
func SmolVLMTiny() (SynthSpec, VisionSpec) {
	lm, err := SynthPreset("tiny")
	if err != nil {
		panic(err) // the tiny preset always exists
	}
	lm.Name = "synthetic-" + SmolVLMTinyPreset
	v := VisionSpec{ImageSize: 64, LongestEdge: 64, PatchSize: 4, DModel: 32, NHead: 2, DFF: 48, NLayer: 2, ScaleFactor: 2, NormEps: 1e-6}
	return lm, v
}

// ImageTokens returns how many embeddings one slice (or the overview)
// gives.
func (v VisionSpec) ImageTokens() int {
	n := v.ImageSize / v.PatchSize / v.ScaleFactor
	return n * n
}

func (v VisionSpec) check() error {
	for _, p := range []struct {
		name string
		n    int
	}{{"image size", v.ImageSize}, {"patch size", v.PatchSize}, {"vision d_model", v.DModel}, {"vision heads", v.NHead}, {"vision d_ff", v.DFF}, {"vision layers", v.NLayer}, {"scale factor", v.ScaleFactor}, {"projection width", v.ProjDim}} {
		if p.n <= 0 {
			return fmt.Errorf("synthetic vision model: %s must be positive, got %d", p.name, p.n)
		}
	}
	if v.ImageSize%(v.PatchSize*v.ScaleFactor) != 0 {
		return fmt.Errorf("synthetic vision model: image size %d is not a multiple of patch size × scale factor (%d×%d)", v.ImageSize, v.PatchSize, v.ScaleFactor)
	}
	if v.DModel%v.NHead != 0 {
		return fmt.Errorf("synthetic vision model: vision d_model %d is not a multiple of the %d heads", v.DModel, v.NHead)
	}
	if v.DFF == v.DModel {
		// clip.cpp swaps ffn_up and ffn_down of idefics3 files whose
		// ffn_down rows are d_model long (old converters wrote them
		// swapped): a square MLP would be read the wrong way round
		return fmt.Errorf("synthetic vision model: vision d_ff must differ from d_model (%d)", v.DModel)
	}
	return nil
}

// VisionExtraTokens are the tokens clip's idefics3 projector looks up in
// the language model's vocabulary (mtmd wraps every slice and the overview
// in them): WriteSynthVision appends those the vocabulary lacks as
// user-defined tokens. SmolVLM's own vocabulary has all of them.
var VisionExtraTokens = []string{"<fake_token_around_image>", "<global-img>", "\n\n"}

// WriteSynthVision writes a synthetic vision-language pair: the language
// model lm to lmPath (its vocabulary with VisionExtraTokens added) and the
// mmproj file of v to mmprojPath, both with deterministic random weights
// from lm.Seed. v.ProjDim defaults to lm.DModel; any other value writes a
// projector that does not fit the model (for tests of that error).
func WriteSynthVision(lmPath, mmprojPath string, lm SynthSpec, v VisionSpec) error {
	if lm.Arch != "" && lm.Arch != "llama" {
		return fmt.Errorf("synthetic vision pairs have a llama language model, not %s", lm.Arch)
	}
	if v.ProjDim == 0 {
		v.ProjDim = lm.DModel
	}
	if v.LongestEdge == 0 {
		v.LongestEdge = v.ImageSize
	}
	if v.NormEps == 0 {
		v.NormEps = 1e-6
	}
	if err := v.check(); err != nil {
		return err
	}
	if lmPath == mmprojPath {
		return fmt.Errorf("the language model and the mmproj file must be two files, both are %s", lmPath)
	}
	if !lm.Overwrite {
		for _, p := range []string{lmPath, mmprojPath} {
			if _, err := os.Lstat(p); err == nil {
				return existError(p)
			}
		}
	}
	vocab, err := visionVocab(lm.VocabPath)
	if err != nil {
		return err
	}
	// WriteSynthetic copies a vocabulary from a file: the extended one goes
	// to a temporary file beside the output
	tmp, err := os.CreateTemp(filepath.Dir(lmPath), ".lldiff-vocab-*.gguf")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)
	vw := &Writer{Overwrite: true}
	for _, kv := range vocab {
		if err := vw.AddKV(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	if err := vw.WriteFile(tmpName); err != nil {
		return err
	}
	lm.VocabPath = tmpName
	if err := WriteSynthetic(lmPath, lm); err != nil {
		return err
	}
	return writeMMProj(mmprojPath, v, lm.Seed, lm.Overwrite)
}

// visionVocab returns the general.architecture and tokenizer.* keys of the
// vocabulary at path (the shipped llama one when empty) with the tokens of
// VisionExtraTokens it lacks appended as user-defined tokens.
func visionVocab(path string) ([]KV, error) {
	var f *File
	var err error
	if path == "" {
		f, err = ShippedVocab("llama")
	} else {
		f, err = Open(path)
	}
	if err != nil {
		return nil, err
	}
	tokens, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok {
		return nil, &FormatError{Path: path, Problem: "has no tokenizer.ggml.tokens", Fix: "use a GGUF file with a vocabulary"}
	}
	var add []string
	for _, t := range VisionExtraTokens {
		if !slices.Contains(tokens, t) {
			add = append(add, t)
		}
	}
	const userDefined = 4 // llama.cpp's LLAMA_TOKEN_TYPE_USER_DEFINED
	out := []KV{{"general.architecture", "llama"}}
	for _, kv := range f.KVs {
		switch kv.Key {
		case "tokenizer.ggml.tokens":
			kv.Value = append(slices.Clone(tokens), add...)
		case "tokenizer.ggml.scores":
			s, ok := kv.Value.([]float32)
			if !ok {
				return nil, &FormatError{Path: path, Problem: fmt.Sprintf("tokenizer.ggml.scores is %T, not float32", kv.Value)}
			}
			kv.Value = append(slices.Clone(s), make([]float32, len(add))...)
		case "tokenizer.ggml.token_type":
			t, ok := kv.Value.([]int32)
			if !ok {
				return nil, &FormatError{Path: path, Problem: fmt.Sprintf("tokenizer.ggml.token_type is %T, not int32", kv.Value)}
			}
			t = slices.Clone(t)
			for range add {
				t = append(t, userDefined)
			}
			kv.Value = t
		default:
			if len(kv.Key) < len("tokenizer.") || kv.Key[:len("tokenizer.")] != "tokenizer." {
				continue
			}
		}
		out = append(out, kv)
	}
	return out, nil
}

// writeMMProj writes the mmproj GGUF of v: the keys and tensors clip.cpp's
// loader reads for a vision encoder with projector type idefics3 (SigLIP:
// conv patch embedding with bias, learned positions, pre-norm blocks with
// LayerNorm and biases, GELU MLP, a final LayerNorm; the projector
// mm.model.fc.weight maps ScaleFactor² merged patches to ProjDim).
func writeMMProj(path string, v VisionSpec, seed uint64, overwrite bool) error {
	w := &Writer{Overwrite: overwrite}
	nPatch := uint64(v.ImageSize / v.PatchSize)
	kvs := []KV{
		{"general.architecture", "clip"},
		{"general.name", "synthetic-" + SmolVLMTinyPreset + "-mmproj"},
		{"general.file_type", uint32(0)},
		{"general.alignment", uint32(DefaultAlignment)},
		{"clip.projector_type", "idefics3"},
		{"clip.has_vision_encoder", true},
		{"clip.use_gelu", true},
		{"clip.vision.embedding_length", uint32(v.DModel)},
		{"clip.vision.feed_forward_length", uint32(v.DFF)},
		{"clip.vision.block_count", uint32(v.NLayer)},
		{"clip.vision.projection_dim", uint32(v.ProjDim)},
		{"clip.vision.attention.head_count", uint32(v.NHead)},
		{"clip.vision.attention.layer_norm_epsilon", float32(v.NormEps)},
		{"clip.vision.image_size", uint32(v.ImageSize)},
		{"clip.vision.preproc_image_size", uint32(v.LongestEdge)},
		{"clip.vision.patch_size", uint32(v.PatchSize)},
		{"clip.vision.image_mean", []float32{0.5, 0.5, 0.5}},
		{"clip.vision.image_std", []float32{0.5, 0.5, 0.5}},
		{"clip.vision.projector.scale_factor", uint32(v.ScaleFactor)},
		{"lldiff.synthetic.seed", seed},
	}
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			return err
		}
	}
	d, ff, ps := uint64(v.DModel), uint64(v.DFF), uint64(v.PatchSize)
	merged := d * uint64(v.ScaleFactor*v.ScaleFactor)
	matrix := func(name string, dims []uint64, sigma float64) error {
		n := uint64(1)
		for _, x := range dims {
			n *= x
		}
		return w.AddTensorFunc(name, F32, dims, func(out io.Writer) error {
			return generate(out, F32, n, sigma, tensorSeed(seed, name))
		})
	}
	vector := func(name string, n uint64, mean, sigma float64) error {
		return w.AddTensorFunc(name, F32, []uint64{n}, func(out io.Writer) error {
			return generateVector(out, n, mean, sigma, tensorSeed(seed, name))
		})
	}
	fanIn := 1 / math.Sqrt(float64(ps*ps*3))
	err := errors.Join(
		// ggml's conv kernel: [kw, kh, channels in, channels out]
		matrix("v.patch_embd.weight", []uint64{ps, ps, 3, d}, fanIn),
		vector("v.patch_embd.bias", d, 0, synthBiasSigma),
		matrix("v.position_embd.weight", []uint64{d, nPatch * nPatch}, synthPosSigma),
	)
	for il := range v.NLayer {
		p := fmt.Sprintf("v.blk.%d.", il)
		sd := 1 / math.Sqrt(float64(d))
		err = errors.Join(err,
			vector(p+"ln1.weight", d, 1, synthHeadNormSigma),
			vector(p+"ln1.bias", d, 0, synthBiasSigma),
			matrix(p+"attn_q.weight", []uint64{d, d}, sd),
			vector(p+"attn_q.bias", d, 0, synthBiasSigma),
			matrix(p+"attn_k.weight", []uint64{d, d}, sd),
			vector(p+"attn_k.bias", d, 0, synthBiasSigma),
			matrix(p+"attn_v.weight", []uint64{d, d}, sd),
			vector(p+"attn_v.bias", d, 0, synthBiasSigma),
			matrix(p+"attn_out.weight", []uint64{d, d}, sd),
			vector(p+"attn_out.bias", d, 0, synthBiasSigma),
			vector(p+"ln2.weight", d, 1, synthHeadNormSigma),
			vector(p+"ln2.bias", d, 0, synthBiasSigma),
			matrix(p+"ffn_up.weight", []uint64{d, ff}, sd),
			vector(p+"ffn_up.bias", ff, 0, synthBiasSigma),
			matrix(p+"ffn_down.weight", []uint64{ff, d}, 1/math.Sqrt(float64(ff))),
			vector(p+"ffn_down.bias", d, 0, synthBiasSigma),
		)
	}
	err = errors.Join(err,
		vector("v.post_ln.weight", d, 1, synthHeadNormSigma),
		vector("v.post_ln.bias", d, 0, synthBiasSigma),
		// the LayerNorm'd merged patches have unit-size entries: σ
		// 1/√fan-in gives embeddings of the size of token embeddings (σ 1)
		matrix("mm.model.fc.weight", []uint64{merged, uint64(v.ProjDim)}, 1/math.Sqrt(float64(merged))),
	)
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}
