package diff

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestSpearman(t *testing.T) {
	tests := []struct {
		name string
		x, y []float64
		want float64
	}{
		// Any increasing function gives 1, any decreasing one −1.
		{"monotone", []float64{1, 2, 3, 4, 5}, []float64{1, 4, 9, 16, 25}, 1},
		{"reversed", []float64{1, 2, 3, 4, 5}, []float64{5, 4, 3, 2, 1}, -1},
		{"decreasing exp", []float64{0.1, 3, -2, 7}, []float64{math.Exp(-0.1), math.Exp(-3), math.Exp(2), math.Exp(-7)}, -1},
		{"two", []float64{1, 2}, []float64{3, 5}, 1},
		// Wikipedia's "Spearman's rank correlation coefficient" example, IQ
		// against hours of TV per week, no ties: Σd² = 194, so
		// ρ = 1 − 6·194/(10·99) = −29/165 ≈ −0.1758.
		{"IQ and TV",
			[]float64{106, 100, 86, 101, 99, 103, 97, 113, 112, 110},
			[]float64{7, 27, 2, 50, 28, 29, 20, 12, 6, 17},
			-29.0 / 165},
		// Ties in x: ranks (1, 2.5, 2.5, 4) and (1, 2, 3, 4), both of mean
		// 2.5; deviations (−1.5, 0, 0, 1.5) and (−1.5, −.5, .5, 1.5);
		// Σ products 4.5, Σ squares 4.5 and 5: ρ = 4.5/√22.5 = √0.9 ≈ 0.9487.
		// (1 − 6Σd²/(n(n²−1)) would give 1 − 6·0.5/60 = 0.95: the shortcut
		// formula is wrong with ties.)
		{"ties in x", []float64{1, 2, 2, 3}, []float64{1, 2, 3, 4}, math.Sqrt(0.9)},
		// Ties in both: ranks (1.5, 1.5, 3.5, 3.5) and (1.5, 3.5, 1.5, 3.5):
		// deviations (−1,−1,1,1) and (−1,1,−1,1) are orthogonal: ρ = 0.
		{"ties in both", []float64{1, 1, 2, 2}, []float64{1, 2, 1, 2}, 0},
		// Undefined cases are NaN.
		{"constant x", []float64{2, 2, 2}, []float64{1, 2, 3}, math.NaN()},
		{"constant y", []float64{1, 2, 3}, []float64{0, 0, 0}, math.NaN()},
		{"one", []float64{1}, []float64{2}, math.NaN()},
		{"empty", nil, nil, math.NaN()},
		{"NaN", []float64{1, math.NaN(), 3}, []float64{1, 2, 3}, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Spearman(tt.x, tt.y); !near(got, tt.want, tol) {
				t.Errorf("Spearman = %v, want %v", got, tt.want)
			}
			if got := Spearman(tt.y, tt.x); !near(got, tt.want, tol) {
				t.Errorf("Spearman(y, x) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFractionalRanks(t *testing.T) {
	// Sorted: 10 10 | 20 20 20 | 30 take ranks 1,2 | 3,4,5 | 6, so the
	// tied groups get 1.5 and 4.
	x := []float64{10, 20, 10, 30, 20, 20}
	want := []float64{1.5, 4, 1.5, 6, 4, 4}
	if got := fractionalRanks(make([]float64, len(x)), x); !reflect.DeepEqual(got, want) {
		t.Errorf("ranks %v, want %v", got, want)
	}
}

// TestSpearmanBruteForce compares Spearman with an independent computation
// on random data with many ties: ranks counted pairwise (values below, plus
// half of the equal values including itself, plus ½) and the Pearson
// correlation of those ranks by the textbook formula. Both sum O(n) terms of
// size O(n²) with ranks that are exact halves, so they agree to about
// 1e-15; 1e-12 is loose enough for either summation order.
func TestSpearmanBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	rank := func(v []float64) []float64 {
		r := make([]float64, len(v))
		for i := range v {
			less, equal := 0, 0
			for j := range v {
				switch {
				case v[j] < v[i]:
					less++
				case v[j] == v[i]:
					equal++
				}
			}
			r[i] = float64(less) + float64(equal+1)/2
		}
		return r
	}
	pearson := func(x, y []float64) float64 {
		n := float64(len(x))
		var mx, my float64
		for i := range x {
			mx += x[i] / n
			my += y[i] / n
		}
		var sxy, sxx, syy float64
		for i := range x {
			sxy += (x[i] - mx) * (y[i] - my)
			sxx += (x[i] - mx) * (x[i] - mx)
			syy += (y[i] - my) * (y[i] - my)
		}
		return sxy / math.Sqrt(sxx*syy)
	}
	for trial := range 200 {
		n := 3 + rng.IntN(60)
		x := make([]float64, n)
		y := make([]float64, n)
		for i := range x {
			x[i] = float64(rng.IntN(8))
			y[i] = x[i] + float64(rng.IntN(5))
		}
		want := pearson(rank(x), rank(y))
		if got := Spearman(x, y); !near(got, want, 1e-12) {
			t.Fatalf("trial %d: Spearman(%v, %v) = %v, want %v", trial, x, y, got, want)
		}
	}
}
