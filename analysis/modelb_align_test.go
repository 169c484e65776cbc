package analysis

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// TestAlignDirect builds the n_vocab × n_vocab matrices M = E W Wᵀ Eᵀ of
// stories260K (512 tokens) and of a synthetic model with its vocabulary
// and another width, and checks Align's correlations, computed through
// d × d Gram matrices, against the Pearson correlation of the full
// matrices; and that a model aligned with itself gives 1 on the diagonal.
func TestAlignDirect(t *testing.T) {
	pa := stories(t)
	pb := filepath.Join(t.TempDir(), "b.gguf")
	if err := models.WriteSynthetic(pb, models.SynthSpec{NLayer: 2, DModel: 32, NHead: 4, NHeadKV: 2, DFF: 48, NCtx: 64, VocabPath: pa, Seed: 9, Untied: true}); err != nil {
		t.Fatal(err)
	}
	open := func(p string) (*models.Weights, *paramsModel) {
		w, err := models.OpenWeights(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w, openParamsModel(t, p)
	}
	wa, ma := open(pa)
	wb, mb := open(pb)
	va, vb := openVocab(t, ma.f), openVocab(t, mb.f)
	for _, kind := range []string{"down", "up"} {
		r, err := Align(wa, wb, va, vb, AlignOptions{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Corr) != 5 || len(r.Corr[0]) != 2 {
			t.Fatalf("%s: corr is %d × %d, want 5 × 2", kind, len(r.Corr), len(r.Corr[0]))
		}
		full := func(m *paramsModel, l int) []float64 {
			d := m.info.DModel
			name := "output.weight"
			if _, ok := m.f.Tensor(name); !ok {
				name = "token_embd.weight"
			}
			e := m.tensor(t, name)
			p := "blk." + itoa(l) + "."
			var w []float32
			var nvec int
			vec := func(n, c int) float64 { return 0 }
			if kind == "down" {
				w = m.tensor(t, p+"ffn_down.weight") // d rows of d_ff
				nvec = len(w) / d
				vec = func(n, c int) float64 { return float64(w[c*nvec+n]) }
			} else {
				w = m.tensor(t, p+"ffn_up.weight") // d_ff rows of d
				nvec = len(w) / d
				vec = func(n, c int) float64 { return float64(w[n*d+c]) }
			}
			nv := len(e) / d
			// P = E W: n_vocab × n_vec, then M = P Pᵀ
			pm := make([]float64, nv*nvec)
			for i := range nv {
				for n := range nvec {
					var s float64
					for c := range d {
						s += float64(e[i*d+c]) * vec(n, c)
					}
					pm[i*nvec+n] = s
				}
			}
			out := make([]float64, nv*nv)
			for i := range nv {
				for j := range nv {
					var s float64
					for n := range nvec {
						s += pm[i*nvec+n] * pm[j*nvec+n]
					}
					out[i*nv+j] = s
				}
			}
			return out
		}
		pearson := func(x, y []float64) float64 {
			var mx, my float64
			for i := range x {
				mx += x[i]
				my += y[i]
			}
			mx /= float64(len(x))
			my /= float64(len(y))
			var sxy, sxx, syy float64
			for i := range x {
				sxy += (x[i] - mx) * (y[i] - my)
				sxx += (x[i] - mx) * (x[i] - mx)
				syy += (y[i] - my) * (y[i] - my)
			}
			return sxy / math.Sqrt(sxx*syy)
		}
		mB := [2][]float64{full(mb, 0), full(mb, 1)}
		for _, i := range []int{0, 4} {
			mA := full(ma, i)
			for j := range 2 {
				// both sides sum about 512² products in float64 in different
				// orders: 1e-9 is far above that rounding
				if want := pearson(mA, mB[j]); math.Abs(r.Corr[i][j]-want) > 1e-9 {
					t.Errorf("%s: corr[%d][%d] = %.12g, direct %.12g", kind, i, j, r.Corr[i][j], want)
				}
			}
		}
		self, err := Align(wa, wa, va, va, AlignOptions{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		for i := range self.Corr {
			if math.Abs(self.Corr[i][i]-1) > 1e-9 || self.Match[i] != i {
				t.Errorf("%s self: corr[%d][%d] = %g, match %d", kind, i, i, self.Corr[i][i], self.Match[i])
			}
			for j := range self.Corr {
				if math.Abs(self.Corr[i][j]-self.Corr[j][i]) > 1e-9 {
					t.Errorf("%s self: not symmetric at %d,%d", kind, i, j)
				}
			}
		}
	}
}
