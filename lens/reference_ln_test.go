package lens

import (
	"math"
	"reflect"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// lnModel is a 2-dimensional model with a final LayerNorm: γ = (2, 0.5),
// β = (1, -1), W_U rows (1, 0) and (1, 1), output bias (0.25, 0.5), eps 0.5.
var lnModel = &Reference{
	Gamma: []float32{2, 0.5}, W: []float32{1, 0, 1, 1}, D: 2, NVocab: 2, Eps: 0.5,
	LayerNorm: true, Beta: []float32{1, -1}, Bias: []float32{0.25, 0.5},
}

func TestReferenceLayerNorm(t *testing.T) {
	// x = (3, 5): mean 4, deviations (-1, 1), variance 1; norm scales by
	// 1/sqrt(1.5). Norm: h = (-2, 0.5)/sqrt(1.5) + (1, -1), logits
	// (h0, h0 + h1) + bias. Gamma: γ ⊙ (x − mean) = (-2, 0.5), no β or
	// bias. Raw: W_U · (3, 5) = (3, 8).
	x := []float32{3, 5}
	s := 1 / math.Sqrt(1.5)
	h0, h1 := -2*s+1, 0.5*s-1
	for _, tc := range []struct {
		mode Mode
		want []float64
	}{
		{Norm, []float64{h0 + 0.25, h0 + h1 + 0.5}},
		{Gamma, []float64{-2, -1.5}},
		{Raw, []float64{3, 8}},
	} {
		got := lnModel.Unembed(nil, x, 1, tc.mode)
		for i := range tc.want {
			if math.Abs(float64(got[i])-tc.want[i]) > 1e-6*math.Max(1, math.Abs(tc.want[i])) {
				t.Errorf("%s: logit %d = %v, want %v", tc.mode, i, got[i], tc.want[i])
			}
		}
	}
	// Gamma and Raw are linear: the lens of a difference is the difference
	// of the lenses (β and the output bias cancel, and so would they in
	// Norm mode only if the rescalings were equal).
	a, b := []float32{1, 4}, []float32{-2, 0.5}
	d := []float32{a[0] - b[0], a[1] - b[1]}
	for _, mode := range []Mode{Gamma, Raw} {
		la, lb, ld := lnModel.Unembed(nil, a, 1, mode), lnModel.Unembed(nil, b, 1, mode), lnModel.Unembed(nil, d, 1, mode)
		for i := range ld {
			if math.Abs(float64(la[i]-lb[i]-ld[i])) > 1e-5 {
				t.Errorf("%s is not linear: lens(a)−lens(b) = %g, lens(a−b) = %g", mode, la[i]-lb[i], ld[i])
			}
		}
	}
}

// TestNewReferenceLayerNorm writes lnModel as a gpt2 GGUF file and reads it
// back with FindWeights and NewReference.
func TestNewReferenceLayerNorm(t *testing.T) {
	kvs := []models.KV{
		{Key: "gpt2.embedding_length", Value: uint32(2)},
		{Key: "gpt2.attention.layer_norm_epsilon", Value: float32(0.5)},
	}
	tensors := []tensor{
		{EmbedTensor, models.F32, []uint64{2, 2}, f32bytes(1, 0, 1, 1)},
		{NormTensor, models.F32, []uint64{2}, f32bytes(2, 0.5)},
		{NormBiasTensor, models.F32, []uint64{2}, f32bytes(1, -1)},
		{OutputBiasTensor, models.F32, []uint64{2}, f32bytes(0.25, 0.5)},
	}
	f := writeModel(t, "gpt2", kvs, tensors)
	w, err := FindWeights(f)
	if err != nil {
		t.Fatal(err)
	}
	if !w.LayerNorm || w.NormBias != NormBiasTensor || w.OutputBias != OutputBiasTensor || !w.Tied || w.Eps != 0.5 {
		t.Errorf("FindWeights = %+v", w)
	}
	r, err := NewReference(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, lnModel) {
		t.Errorf("NewReference = %+v, want %+v", r, lnModel)
	}
}
