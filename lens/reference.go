package lens

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/models"
)

// Tensor names of the final norm and the unembedding in llama.cpp's GGUF
// naming.
const (
	NormTensor   = "output_norm.weight"
	OutputTensor = "output.weight"
	EmbedTensor  = "token_embd.weight"
)

// Weights locates a model's final RMSNorm and unembedding in its GGUF file.
type Weights struct {
	// Norm is the final norm weight γ (NormTensor), NormType its type.
	Norm     string
	NormType models.GGMLType
	// Unembed is W_U: OutputTensor, or EmbedTensor when the embeddings are
	// tied. UnembedType is its type as stored (Q6_K, Q8_0, F16, ...).
	Unembed     string
	UnembedType models.GGMLType
	Tied        bool
	// D is d_model, NVocab the number of rows of W_U.
	D, NVocab int
	// Eps is the RMSNorm epsilon (attention.layer_norm_rms_epsilon).
	Eps float64
}

// FindWeights returns the unembedding weights of the model in f, or an
// error naming what is missing: a model without output_norm.weight, one
// whose final norm is a LayerNorm (the lens here is RMSNorm's), or tensors
// whose shapes do not fit d_model.
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
	_, bias := f.Tensor("output_norm.bias")
	if !rms || bias {
		return nil, fmt.Errorf("%s (%s): the final norm is a LayerNorm, not an RMSNorm; the logit lens supports RMSNorm models (llama and its relatives)", path, info.Arch)
	}
	if !(info.NormEps > 0) {
		return nil, fmt.Errorf("%s: %s.attention.layer_norm_rms_epsilon is %v; the RMSNorm epsilon must be positive", path, info.Arch, info.NormEps)
	}
	w := &Weights{Norm: NormTensor, Eps: info.NormEps, D: info.DModel}
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
	return &Reference{Gamma: gamma, W: u, D: w.D, NVocab: w.NVocab, Eps: w.Eps}, nil
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
		scale := 1.0
		if mode == Norm {
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			scale = 1 / math.Sqrt(ss/float64(r.D)+r.Eps)
		}
		for i, v := range xr {
			h[i] = float64(v) * scale
			if mode != Raw {
				h[i] *= float64(r.Gamma[i])
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
			out[v] = float32(s)
		}
	}
	return dst
}
