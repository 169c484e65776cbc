package lens

import (
	"math"
	"testing"
)

// TestReferenceSoftcap checks that Reference applies a final soft-cap in
// Norm mode only: each Norm logit is c·tanh(l/c) of the uncapped one (the
// same Reference without the cap), and Gamma and Raw are unchanged.
func TestReferenceSoftcap(t *testing.T) {
	const d, nv, c = 4, 3, 2.0
	r := &Reference{Gamma: []float32{1, 2, 0.5, 1}, W: []float32{3, 1, 0, -2, 0, 4, 1, 1, -5, 0, 2, 3}, D: d, NVocab: nv, Eps: 1e-6}
	x := []float32{0.5, -1, 2, 0.25}
	plain := r.Unembed(nil, x, 1, Norm)
	capped := *r
	capped.Softcap = c
	got := capped.Unembed(nil, x, 1, Norm)
	for i, l := range plain {
		want := c * math.Tanh(float64(l)/c)
		// float32 products with 1/c and c around a float64 tanh
		if math.Abs(float64(got[i])-want) > 1e-6 {
			t.Errorf("logit %d: %g, want %g·tanh(%g/%g) = %g", i, got[i], c, l, c, want)
		}
		if math.Abs(float64(got[i])) >= c {
			t.Errorf("logit %d: %g is not within the cap", i, got[i])
		}
	}
	for _, m := range []Mode{Gamma, Raw} {
		a, b := r.Unembed(nil, x, 1, m), capped.Unembed(nil, x, 1, m)
		for i := range a {
			if a[i] != b[i] {
				t.Errorf("%v mode: logit %d is %g with the cap and %g without; only norm mode caps", m, i, b[i], a[i])
			}
		}
	}
}
