package lens

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/models"
)

// Tensor names of the final norm and the unembedding in llama.cpp's GGUF
// naming (see models).
const (
	NormTensor       = models.NormTensor
	NormBiasTensor   = models.NormBiasTensor
	OutputTensor     = models.OutputTensor
	OutputBiasTensor = models.OutputBiasTensor
	EmbedTensor      = models.EmbedTensor
)

// Weights locates a model's final norm and unembedding in its GGUF file;
// models owns the description (models.Unembedding).
type Weights = models.Unembedding

// FindWeights returns the unembedding weights of the model in f (see
// models.FindUnembedding).
func FindWeights(f *models.File) (*Weights, error) { return models.FindUnembedding(f) }

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
	// Softcap, when positive, soft-caps the logits in Norm mode as the
	// model does (models.Softcap).
	Softcap float64
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
	r := &Reference{Gamma: gamma, W: u, D: w.D, NVocab: w.NVocab, Eps: w.Eps, LayerNorm: w.LayerNorm, Softcap: w.FinalSoftcap}
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
		if mode == Norm && r.Softcap > 0 {
			models.Softcap(out, r.Softcap)
		}
	}
	return dst
}
