package diff

import (
	"math"
	"math/rand/v2"
	"testing"
)

// tol is the tolerance for metrics of the hand-made vectors below. Their sums
// are small integers, exact in float64, so each result has at most a few
// correctly rounded operations after the sums (sqrt, a mean, a division):
// a few ulp, about 1e-15 at these magnitudes. 1e-14 leaves room for that
// and still catches any wrong formula.
const tol = 1e-14

func near(got, want, tol float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	if math.IsInf(want, 0) {
		return got == want
	}
	return math.Abs(got-want) <= tol
}

func TestMetrics(t *testing.T) {
	sqrt2 := math.Sqrt2
	tests := []struct {
		name         string
		a, b         []float32
		normA, normB float64
		dist, rel    float64
		cos          float64
	}{
		// ‖(3,4)‖ = 5; the mean norm is (5+0)/2 = 2.5, so RelDist = 5/2.5 = 2.
		// One zero vector: cosine 0 by convention.
		{"one zero", []float32{3, 4}, []float32{0, 0}, 5, 0, 5, 2, 0},
		{"zero first", []float32{0, 0}, []float32{3, 4}, 0, 5, 5, 2, 0},
		// Orthogonal unit vectors: ‖(1,−1)‖ = √2, mean norm 1.
		{"orthogonal", []float32{1, 0}, []float32{0, 1}, 1, 1, sqrt2, sqrt2, 0},
		// (1,1)·(1,−1) = 0; a−b = (0,2), ‖·‖ = 2; mean norm √2; 2/√2 = √2.
		{"orthogonal diagonal", []float32{1, 1}, []float32{1, -1}, sqrt2, sqrt2, 2, sqrt2, 0},
		// ‖(1,2,2)‖ = 3, ‖(2,4,4)‖ = 6; a−b = (−1,−2,−2), ‖·‖ = 3;
		// mean norm 4.5, RelDist 3/4.5 = 2/3.
		{"parallel", []float32{1, 2, 2}, []float32{2, 4, 4}, 3, 6, 3, 2.0 / 3, 1},
		// a−b = (2,4,4), ‖·‖ = 6; mean norm 3; RelDist 2, the maximum.
		{"antiparallel", []float32{1, 2, 2}, []float32{-1, -2, -2}, 3, 3, 6, 2, -1},
		{"equal", []float32{1, 2, 2}, []float32{1, 2, 2}, 3, 3, 0, 0, 1},
		// Both zero: RelDist 0/0 is 0 and Cosine is 1 by convention.
		{"both zero", []float32{0, 0, 0}, []float32{0, 0, 0}, 0, 0, 0, 0, 1},
		{"empty", []float32{}, []float32{}, 0, 0, 0, 0, 1},
		{"nil", nil, nil, 0, 0, 0, 0, 1},
		// ‖(2,0,1)‖ = √5, ‖(1,2,2)‖ = 3, a−b = (1,−2,−1), ‖·‖ = √6,
		// a·b = 2+0+2 = 4: Cosine 4/(3√5) ≈ 0.5963,
		// RelDist √6/((√5+3)/2) ≈ 0.9356.
		{"general", []float32{2, 0, 1}, []float32{1, 2, 2}, math.Sqrt(5), 3, math.Sqrt(6),
			2 * math.Sqrt(6) / (math.Sqrt(5) + 3), 4 / (3 * math.Sqrt(5)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				what      string
				got, want float64
			}{
				{"Norm(a)", Norm(tt.a), tt.normA},
				{"Norm(b)", Norm(tt.b), tt.normB},
				{"Dist", Dist(tt.a, tt.b), tt.dist},
				{"Dist reversed", Dist(tt.b, tt.a), tt.dist},
				{"RelDist", RelDist(tt.a, tt.b), tt.rel},
				{"RelDist reversed", RelDist(tt.b, tt.a), tt.rel},
				{"Cosine", Cosine(tt.a, tt.b), tt.cos},
				{"Cosine reversed", Cosine(tt.b, tt.a), tt.cos},
			} {
				if !near(c.got, c.want, tol) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
}

// TestMetricsRange checks that sums are taken in float64: the squares of
// these float32 values overflow or underflow float32 but are exact in
// float64, and the results are exact powers-of-two multiples.
func TestMetricsRange(t *testing.T) {
	tests := []struct {
		name  string
		scale float64
	}{
		{"large", 0x1p70},  // (3·2⁷⁰)² ≈ 1.3e43 > MaxFloat32 ≈ 3.4e38
		{"small", 0x1p-80}, // (3·2⁻⁸⁰)² ≈ 6e-48 < smallest float32 ≈ 1.4e-45
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := []float32{float32(3 * tt.scale), float32(4 * tt.scale)}
			b := []float32{float32(4 * tt.scale), float32(3 * tt.scale)}
			// ‖a‖ = 5s; a−b = (−s, s), ‖·‖ = √2 s; a·b = 24 s²,
			// cosine 24/25. Relative tolerance as in tol.
			if got, want := Norm(a), 5*tt.scale; got != want {
				t.Errorf("Norm = %v, want %v", got, want)
			}
			if got, want := Dist(a, b), math.Sqrt2*tt.scale; math.Abs(got-want) > tol*want {
				t.Errorf("Dist = %v, want %v", got, want)
			}
			if got, want := RelDist(a, b), math.Sqrt2/5; !near(got, want, tol) {
				t.Errorf("RelDist = %v, want %v", got, want)
			}
			if got, want := Cosine(a, b), 24.0/25; !near(got, want, tol) {
				t.Errorf("Cosine = %v, want %v", got, want)
			}
		})
	}
}

// TestCosineClamped checks that rounding never takes Cosine outside
// [−1, 1]: for a vector and itself (or its negation) the unclamped ratio is
// often one ulp past ±1.
func TestCosineClamped(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n < 200; n++ {
		a := make([]float32, n)
		neg := make([]float32, n)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
			neg[i] = -a[i]
		}
		// Equal vectors: cosine 1 to within rounding of n products
		// (n·2⁻⁵³ < 1e-13 for n < 200).
		if c := Cosine(a, a); c > 1 || 1-c > 1e-13 {
			t.Fatalf("n=%d: Cosine(a, a) = %v, want 1 and at most 1", n, c)
		}
		if c := Cosine(a, neg); c < -1 || c+1 > 1e-13 {
			t.Fatalf("n=%d: Cosine(a, −a) = %v, want −1 and at least −1", n, c)
		}
	}
}

func TestSubTo(t *testing.T) {
	a := []float32{1.5, -2, 0}
	b := []float32{0.5, 1, -3}
	want := []float32{1, -3, 3} // exact in float32

	got := SubTo(nil, a, b)
	if !equal32(got, want) {
		t.Errorf("SubTo(nil) = %v, want %v", got, want)
	}

	dst := make([]float32, 3)
	got = SubTo(dst, a, b)
	if !equal32(dst, want) || &got[0] != &dst[0] {
		t.Errorf("SubTo(dst) wrote %v and returned a different slice: %v, want %v in dst", dst, got, want)
	}

	// dst may alias a.
	a2 := append([]float32(nil), a...)
	SubTo(a2, a2, b)
	if !equal32(a2, want) {
		t.Errorf("SubTo(a, a, b) = %v, want %v", a2, want)
	}

	if got := SubTo(nil, nil, nil); got == nil || len(got) != 0 {
		t.Errorf("SubTo(nil, nil, nil) = %#v, want an empty non-nil slice", got)
	}
}

func equal32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPanics(t *testing.T) {
	two := []float32{1, 2}
	three := []float32{1, 2, 3}
	tests := []struct {
		name string
		f    func()
	}{
		{"Dist", func() { Dist(two, three) }},
		{"RelDist", func() { RelDist(two, three) }},
		{"Cosine", func() { Cosine(three, two) }},
		{"Dot", func() { Dot(two, three) }},
		{"Dot64", func() { Dot64(two, []float64{1}) }},
		{"SubTo a b", func() { SubTo(nil, two, three) }},
		{"SubTo dst", func() { SubTo(make([]float32, 3), two, two) }},
		{"SubTo empty dst", func() { SubTo([]float32{}, two, two) }},
		{"TopNeurons", func() { TopNeurons(two, three, 1) }},
		{"Spearman", func() { Spearman([]float64{1, 2}, []float64{1, 2, 3}) }},
		{"fractionalRanks", func() { fractionalRanks(make([]float64, 1), []float64{1, 2}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r != lenMismatch {
					t.Errorf("panic = %v, want %q", r, lenMismatch)
				}
			}()
			tt.f()
		})
	}
}

// TestCosineSymmetric: Cosine(a, b) and Cosine(b, a) are the same float64,
// bit for bit, for any vectors (ab / na / nb would round differently from
// ab / nb / na in the last bit, which a user sees in a cosine matrix).
func TestCosineSymmetric(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n < 300; n++ {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i] = float32(rng.NormFloat64() * math.Exp(rng.NormFloat64()*3))
			b[i] = float32(rng.NormFloat64())
		}
		if x, y := Cosine(a, b), Cosine(b, a); x != y {
			t.Fatalf("n=%d: Cosine(a,b) = %v, Cosine(b,a) = %v", n, x, y)
		}
	}
}

// TestDotNormUnit checks the helpers the other packages use instead of
// their own (contrast, analysis, the reference engine). The sums are small
// integers, exact in float64, hence tol.
func TestDotNormUnit(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"Dot", Dot([]float32{1, 2, 3}, []float32{4, -5, 6}), 12},
		{"Dot empty", Dot(nil, nil), 0},
		{"Dot64", Dot64([]float32{1, 2}, []float64{0.5, -1}), -1.5},
		{"Norm", Norm([]float32{3, 4}), 5},
		{"Norm64", Norm64([]float64{3, 4}), 5},
		{"Norm64 zero", Norm64(make([]float64, 3)), 0},
	} {
		if !near(tc.got, tc.want, tol) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// 3/5 and 4/5 divided in float64 and rounded once to float32
	if u := Unit([]float32{3, 4}); u[0] != 0.6 || u[1] != 0.8 {
		t.Errorf("Unit(3, 4) = %v, want [0.6 0.8]", u)
	}
	// a zero vector has no direction: Unit keeps it, Cosine follows its
	// documented convention (1 with another zero vector, 0 otherwise)
	z := []float32{0, 0}
	if u := Unit(z); u[0] != 0 || u[1] != 0 || &u[0] == &z[0] {
		t.Errorf("Unit(0) = %v, want a new zero vector", u)
	}
	if c := Cosine(z, []float32{1, 1}); c != 0 {
		t.Errorf("Cosine(0, v) = %v, want 0", c)
	}
	if c := Cosine(z, z); c != 1 {
		t.Errorf("Cosine(0, 0) = %v, want 1", c)
	}
}
