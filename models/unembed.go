package models

import (
	"fmt"
	"math"
	"strings"
)

// This file describes a model's final norm and unembedding: which tensors
// hold them, the norm's kind and epsilon, and how much of the norm a logit
// lens applies. It is a description of the model, read from the GGUF
// header; the lens computations live in package lens (pure Go) and in
// llamacpp.Unembedder (ggml).

// Tensor names of the final norm and the unembedding in llama.cpp's GGUF
// naming.
const (
	NormTensor       = "output_norm.weight"
	NormBiasTensor   = "output_norm.bias" // β of a final LayerNorm
	OutputTensor     = "output.weight"
	OutputBiasTensor = "output.bias"
	EmbedTensor      = "token_embd.weight"
)

// LensMode says how much of the final norm the logit lens applies before
// the unembedding. LensNorm is the model's own computation; LensGamma and
// LensRaw are linear in x, so the lens of a difference A−B is the
// difference of the lenses in those modes.
type LensMode int

const (
	// LensNorm applies the final RMSNorm with its weight γ, then W_U:
	// W_U · (γ ⊙ x / sqrt(mean(x²) + eps)). With a final LayerNorm it is
	// W_U · (γ ⊙ (x − mean x) / sqrt(var(x) + eps) + β) (+ an output bias
	// where the model has one), and where the model soft-caps its logits
	// (gemma2) the same cap.
	LensNorm LensMode = iota
	// LensGamma scales by γ without the rescaling: W_U · (γ ⊙ x); with a
	// LayerNorm W_U · (γ ⊙ (x − mean x)), centred as the norm centres but
	// without β, so that it stays linear in x.
	LensGamma
	// LensRaw unembeds x directly: W_U · x.
	LensRaw
)

var lensModeNames = [...]string{LensNorm: "norm", LensGamma: "gamma", LensRaw: "raw"}

func (m LensMode) String() string {
	if m.Valid() {
		return lensModeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Valid reports whether m is LensNorm, LensGamma or LensRaw.
func (m LensMode) Valid() bool { return m >= 0 && int(m) < len(lensModeNames) }

// ParseLensMode parses "norm", "gamma" or "raw" (case-insensitive).
func ParseLensMode(s string) (LensMode, error) {
	for m, name := range lensModeNames {
		if strings.EqualFold(s, name) {
			return LensMode(m), nil
		}
	}
	return 0, fmt.Errorf("unknown lens mode %q: use norm (the final norm with its weights, the model's own), gamma (γ without the rescaling) or raw (W_U alone)", s)
}

// Unembedding locates a model's final norm and unembedding in its GGUF
// file.
type Unembedding struct {
	// Norm is the final norm weight γ (NormTensor), NormType its type.
	Norm     string
	NormType GGMLType
	// LayerNorm is set when the final norm is a LayerNorm (gpt2, gptneox):
	// (x − mean(x)) / sqrt(var(x) + eps) · γ + β, with β in NormBias
	// (NormBiasTensor). Otherwise it is an RMSNorm and NormBias is "".
	LayerNorm bool
	NormBias  string
	// OutputBias is OutputBiasTensor when the file has a bias added to the
	// logits, and "" otherwise (llama, gpt2 and gptneox have none:
	// llama.cpp's loader refuses a file of those architectures with one;
	// qwen2's loader takes one).
	OutputBias string
	// Unembed is W_U: OutputTensor, or EmbedTensor when the embeddings are
	// tied. UnembedType is its type as stored (Q6_K, Q8_0, F16, ...).
	Unembed     string
	UnembedType GGMLType
	Tied        bool
	// D is d_model, NVocab the number of rows of W_U.
	D, NVocab int
	// Eps is the norm's epsilon (attention.layer_norm_rms_epsilon, or
	// attention.layer_norm_epsilon for a LayerNorm).
	Eps float64
	// FinalSoftcap, when positive, is c of the final logit soft-capping
	// c·tanh(logit/c) (gemma2: final_logit_softcapping, llama.cpp's
	// default 30), which LensNorm applies as the model does (Softcap).
	FinalSoftcap float64
}

// Softcap replaces each logit l of v by c·tanh(l/c) as llama.cpp's gemma2
// graph computes it: a float32 product with float32(1/c), tanh, a float32
// product with c.
func Softcap(v []float32, c float64) {
	inv, cc := float32(1/c), float32(c)
	for i, l := range v {
		v[i] = float32(math.Tanh(float64(l*inv))) * cc
	}
}

// FindUnembedding returns the unembedding of the model in f, or an error
// naming what is missing: a model without output_norm.weight (or, with a
// LayerNorm, output_norm.bias), one whose final norm is a LayerNorm of an
// architecture lldiff does not know, or tensors whose shapes do not fit
// d_model.
func FindUnembedding(f *File) (*Unembedding, error) {
	info, err := f.Info()
	if err != nil {
		return nil, err
	}
	path := f.Path
	if path == "" {
		path = "model"
	}
	if info.VocabOnly {
		return nil, fmt.Errorf("%s is vocab-only: it has no weights to unembed with", path)
	}
	_, rms := f.Get(info.Arch + ".attention.layer_norm_rms_epsilon")
	_, bias := f.Tensor(NormBiasTensor)
	epsKey := "attention.layer_norm_rms_epsilon"
	if info.LayerNorm {
		epsKey = "attention.layer_norm_epsilon"
	} else if !rms || bias {
		return nil, fmt.Errorf("%s (%s): the final norm is a LayerNorm of an architecture lldiff does not know; the logit lens supports llama and its relatives (RMSNorm), gpt2 and gptneox (LayerNorm)", path, info.Arch)
	}
	if !(info.NormEps > 0) {
		return nil, fmt.Errorf("%s: %s.%s is %v; the norm's epsilon must be positive", path, info.Arch, epsKey, info.NormEps)
	}
	w := &Unembedding{Norm: NormTensor, Eps: info.NormEps, D: info.DModel, LayerNorm: info.LayerNorm}
	switch info.Arch {
	case "gemma2":
		w.FinalSoftcap = 30 // llama.cpp's default, which its gemma2 graph always applies
		if c, ok := f.Float("gemma2.final_logit_softcapping"); ok {
			w.FinalSoftcap = c
		}
		if !(w.FinalSoftcap > 0) || math.IsInf(w.FinalSoftcap, 0) {
			return nil, fmt.Errorf("%s: gemma2.final_logit_softcapping is %v; it must be positive", path, w.FinalSoftcap)
		}
	case "gemma3":
		// applied only when set and not 0, as llama.cpp's gemma3 graph does
		if c, ok := f.Float("gemma3.final_logit_softcapping"); ok && c != 0 {
			if !(c > 0) || math.IsInf(c, 0) {
				return nil, fmt.Errorf("%s: gemma3.final_logit_softcapping is %v; it must be positive or 0", path, c)
			}
			w.FinalSoftcap = c
		}
	}
	g, ok := f.Tensor(NormTensor)
	if !ok {
		return nil, fmt.Errorf("%s has no %s (the final norm weight γ): the logit lens needs it", path, NormTensor)
	}
	if len(g.Dims) != 1 || g.Dims[0] != uint64(w.D) {
		return nil, fmt.Errorf("%s: %s has shape %v, want [%d] (d_model)", path, NormTensor, g.Dims, w.D)
	}
	if !CanDequantize(g.Type) {
		return nil, fmt.Errorf("%s: %s has type %s; want F32, F16 or BF16", path, NormTensor, g.Type)
	}
	w.NormType = g.Type
	if w.LayerNorm {
		b, ok := f.Tensor(NormBiasTensor)
		if !ok {
			return nil, fmt.Errorf("%s has no %s (the final LayerNorm's bias β): the logit lens needs it", path, NormBiasTensor)
		}
		if len(b.Dims) != 1 || b.Dims[0] != uint64(w.D) || !CanDequantize(b.Type) {
			return nil, fmt.Errorf("%s: %s is %s %v; want F32, F16 or BF16 [%d] (d_model)", path, NormBiasTensor, b.Type, b.Dims, w.D)
		}
		w.NormBias = NormBiasTensor
	}
	u, ok := f.Tensor(OutputTensor)
	if !ok {
		if u, ok = f.Tensor(EmbedTensor); !ok {
			return nil, fmt.Errorf("%s has neither %s nor %s: no unembedding matrix", path, OutputTensor, EmbedTensor)
		}
		w.Tied = true
	}
	w.Unembed, w.UnembedType = u.Name, u.Type
	if len(u.Dims) != 2 || u.Dims[0] != uint64(w.D) || u.Dims[1] == 0 || u.Dims[1] > math.MaxInt32 {
		return nil, fmt.Errorf("%s: %s has shape %v, want [%d n_vocab] (d_model first in ggml order)", path, u.Name, u.Dims, w.D)
	}
	w.NVocab = int(u.Dims[1])
	if b, ok := f.Tensor(OutputBiasTensor); ok {
		if len(b.Dims) != 1 || b.Dims[0] != uint64(w.NVocab) || !CanDequantize(b.Type) {
			return nil, fmt.Errorf("%s: %s is %s %v; want F32, F16 or BF16 [%d] (n_vocab)", path, OutputBiasTensor, b.Type, b.Dims, w.NVocab)
		}
		w.OutputBias = OutputBiasTensor
	}
	return w, nil
}
