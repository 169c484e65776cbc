package lens

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/models"
)

// Tensor names of the final norm and the unembedding in llama.cpp's GGUF
// naming.
const (
	NormTensor       = "output_norm.weight"
	NormBiasTensor   = "output_norm.bias" // β of a final LayerNorm
	OutputTensor     = "output.weight"
	OutputBiasTensor = "output.bias"
	EmbedTensor      = "token_embd.weight"
)

// Weights locates a model's final norm and unembedding in its GGUF file.
type Weights struct {
	// Norm is the final norm weight γ (NormTensor), NormType its type.
	Norm     string
	NormType models.GGMLType
	// LayerNorm is set when the final norm is a LayerNorm (gpt2, gptneox):
	// (x − mean(x)) / sqrt(var(x) + eps) · γ + β, with β in NormBias
	// (NormBiasTensor). Otherwise it is an RMSNorm and NormBias is "".
	LayerNorm bool
	NormBias  string
	// OutputBias is OutputBiasTensor when the file has a bias added to the
	// logits, and "" otherwise (llama, gpt2 and gptneox have none:
	// llama.cpp's loader refuses a file of those architectures with one).
	OutputBias string
	// Unembed is W_U: OutputTensor, or EmbedTensor when the embeddings are
	// tied. UnembedType is its type as stored (Q6_K, Q8_0, F16, ...).
	Unembed     string
	UnembedType models.GGMLType
	Tied        bool
	// D is d_model, NVocab the number of rows of W_U.
	D, NVocab int
	// Eps is the norm's epsilon (attention.layer_norm_rms_epsilon, or
	// attention.layer_norm_epsilon for a LayerNorm).
	Eps float64
}

// FindWeights returns the unembedding weights of the model in f, or an
// error naming what is missing: a model without output_norm.weight (or,
// with a LayerNorm, output_norm.bias), one whose final norm is a LayerNorm
// of an architecture lldiff does not know, or tensors whose shapes do not
// fit d_model.
func FindWeights(f *models.File) (*Weights, error) {
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
	w := &Weights{Norm: NormTensor, Eps: info.NormEps, D: info.DModel, LayerNorm: info.LayerNorm}
	g, ok := f.Tensor(NormTensor)
	if !ok {
		return nil, fmt.Errorf("%s has no %s (the final norm weight γ): the logit lens needs it", path, NormTensor)
	}
	if len(g.Dims) != 1 || g.Dims[0] != uint64(w.D) {
		return nil, fmt.Errorf("%s: %s has shape %v, want [%d] (d_model)", path, NormTensor, g.Dims, w.D)
	}
	if !models.CanDequantize(g.Type) {
		return nil, fmt.Errorf("%s: %s has type %s; want F32, F16 or BF16", path, NormTensor, g.Type)
	}
	w.NormType = g.Type
	if w.LayerNorm {
		b, ok := f.Tensor(NormBiasTensor)
		if !ok {
			return nil, fmt.Errorf("%s has no %s (the final LayerNorm's bias β): the logit lens needs it", path, NormBiasTensor)
		}
		if len(b.Dims) != 1 || b.Dims[0] != uint64(w.D) || !models.CanDequantize(b.Type) {
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
		if len(b.Dims) != 1 || b.Dims[0] != uint64(w.NVocab) || !models.CanDequantize(b.Type) {
			return nil, fmt.Errorf("%s: %s is %s %v; want F32, F16 or BF16 [%d] (n_vocab)", path, OutputBiasTensor, b.Type, b.Dims, w.NVocab)
		}
		w.OutputBias = OutputBiasTensor
	}
	return w, nil
}

// Reference is the logit lens in plain Go with float64 accumulation: slow
// (n_vocab × d_model multiply-adds per row, no SIMD) and holding W_U as
// float32, so meant for tests and tiny models.
type Reference struct {
	Gamma     []float32 // γ, D values
	W         []float32 // W_U, NVocab rows of D, row-major
	D, NVocab int
	Eps       float64
	// LayerNorm makes the final norm a LayerNorm: the rows are centred
	// (in every mode but Raw) and Beta (D values) is added in Norm mode.
	LayerNorm bool
	Beta      []float32
	// Bias, when not nil, is added to the logits in Norm mode (NVocab
	// values).
	Bias []float32
}

// NewReference reads the final norm and unembedding of the model in f,
// decoding W_U to float32 (any type models.Dequantize supports).
func NewReference(f *models.File) (*Reference, error) {
	w, err := FindWeights(f)
	if err != nil {
		return nil, err
	}
	gamma, err := f.ReadTensorFloat32(w.Norm)
	if err != nil {
		return nil, err
	}
	u, err := f.ReadTensorFloat32(w.Unembed)
	if err != nil {
		return nil, err
	}
	r := &Reference{Gamma: gamma, W: u, D: w.D, NVocab: w.NVocab, Eps: w.Eps, LayerNorm: w.LayerNorm}
	if w.NormBias != "" {
		if r.Beta, err = f.ReadTensorFloat32(w.NormBias); err != nil {
			return nil, err
		}
	}
	if w.OutputBias != "" {
		if r.Bias, err = f.ReadTensorFloat32(w.OutputBias); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Unembed writes the lens of the n rows of x (n × D, row-major) in mode to
// dst as n × NVocab logits, reusing dst when its capacity suffices, and
// returns it. It panics if len(x) != n·D or mode is not valid.
func (r *Reference) Unembed(dst, x []float32, n int, mode Mode) []float32 {
	if n < 0 || len(x) != n*r.D {
		panic(fmt.Sprintf("lens: Reference.Unembed: %d values are not %d rows of %d", len(x), n, r.D))
	}
	if !mode.Valid() {
		panic(fmt.Sprintf("lens: Reference.Unembed: invalid mode %d", int(mode)))
	}
	if cap(dst) < n*r.NVocab {
		dst = make([]float32, n*r.NVocab)
	}
	dst = dst[:n*r.NVocab]
	h := make([]float64, r.D)
	for row := range n {
		xr := x[row*r.D : (row+1)*r.D]
		mean := 0.0
		if r.LayerNorm && mode != Raw {
			for _, v := range xr {
				mean += float64(v)
			}
			mean /= float64(r.D)
		}
		scale := 1.0
		if mode == Norm {
			var ss float64
			for _, v := range xr {
				ss += (float64(v) - mean) * (float64(v) - mean)
			}
			scale = 1 / math.Sqrt(ss/float64(r.D)+r.Eps)
		}
		for i, v := range xr {
			h[i] = (float64(v) - mean) * scale
			if mode != Raw {
				h[i] *= float64(r.Gamma[i])
			}
			if mode == Norm && r.Beta != nil {
				h[i] += float64(r.Beta[i])
			}
		}
		out := dst[row*r.NVocab : (row+1)*r.NVocab]
		for v := range out {
			wr := r.W[v*r.D : (v+1)*r.D]
			h := h[:len(wr)] // no bounds checks in the loop
			var s float64
			for i, w := range wr {
				s += float64(w) * h[i]
			}
			if mode == Norm && r.Bias != nil {
				s += float64(r.Bias[v])
			}
			out[v] = float32(s)
		}
	}
	return dst
}
