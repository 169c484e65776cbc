package contrast

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
)

func samples(d int, rows ...[]float32) *Samples {
	s := NewSamples(d, len(rows))
	for _, r := range rows {
		s.Append(r)
	}
	return s
}

// The hand-computed cases below are exact in binary floating point or
// nearly so; tol covers float64 rounding of sums of a few terms.
const tol = 1e-12

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(want) {
		if !math.IsNaN(got) {
			t.Errorf("%s = %v, want NaN", what, got)
		}
		return
	}
	if math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %.15g, want %.15g", what, got, want)
	}
}

func TestComputeKnownAnswers(t *testing.T) {
	// A = {(1,0), (3,0)}, B = {(−1,1), (−1,−1)}: Δμ = (3,0), u = (1,0).
	a := samples(2, []float32{1, 0}, []float32{3, 0})
	b := samples(2, []float32{-1, 1}, []float32{-1, -1})
	lambda1 := (22 + math.Sqrt(340)) / 2 // top eigenvalue of [[20,2],[2,2]]
	for _, tc := range []struct {
		name                      string
		paired                    bool
		sign, heldOut             float64
		pc                        [2]float64
		explained                 float64
		wantStdA, wantStdB, wantD float64
	}{
		{
			// pooled, centered at (0.5,0): second moments xx=11, yy=2, xy=0
			name: "unpaired", sign: math.NaN(),
			// LOO: A(1,0) ties (0.5), A(3,0) right, both B rows right
			heldOut: 3.5 / 4, pc: [2]float64{1, 0}, explained: 11.0 / 13,
			wantStdA: math.Sqrt2, wantStdB: 0, wantD: 3,
		},
		{
			// differences (2,−1), (4,1): both point along Δμ; uncentered
			// second moments [[20,2],[2,2]]
			name: "paired", paired: true, sign: 1, heldOut: 1,
			pc:        [2]float64{2 / math.Hypot(2, lambda1-20), (lambda1 - 20) / math.Hypot(2, lambda1-20)},
			explained: lambda1 / 22,
			wantStdA:  math.Sqrt2, wantStdB: 0, wantD: 3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compute(a, b, tc.paired)
			if err != nil {
				t.Fatal(err)
			}
			if s.MeanDiff[0] != 3 || s.MeanDiff[1] != 0 {
				t.Errorf("MeanDiff = %v, want [3 0]", s.MeanDiff)
			}
			near(t, "Norm", s.Norm, 3, tol)
			near(t, "MeanA", s.MeanA, 2, tol)
			near(t, "MeanB", s.MeanB, -1, tol)
			near(t, "StdA", s.StdA, tc.wantStdA, tol)
			near(t, "StdB", s.StdB, tc.wantStdB, tol)
			// pooled: sqrt((1·2 + 1·0)/2) = 1
			near(t, "Spread", s.Spread, 1, tol)
			near(t, "Separation", s.Separation, tc.wantD, tol)
			near(t, "SignConsistency", s.SignConsistency, tc.sign, tol)
			near(t, "HeldOut", s.HeldOut, tc.heldOut, tol)
			// PC is stored as float32: compare to float32 precision
			near(t, "PC[0]", float64(s.PC.Vec[0]), tc.pc[0], 1e-7)
			near(t, "PC[1]", float64(s.PC.Vec[1]), tc.pc[1], 1e-7)
			near(t, "PC explained", s.PC.Explained, tc.explained, 1e-12)
			near(t, "PCCos", s.PCCos, tc.pc[0], 1e-7)
			if want := []float64{1, 3}; s.ProjA[0] != want[0] || s.ProjA[1] != want[1] {
				t.Errorf("ProjA = %v, want %v", s.ProjA, want)
			}
		})
	}
}

func TestSignConsistency(t *testing.T) {
	// 1-D differences 2, 2, 2, −1: Δμ = 1.25, three of four agree.
	a := samples(1, []float32{2}, []float32{2}, []float32{2}, []float32{-1})
	b := samples(1, []float32{0}, []float32{0}, []float32{0}, []float32{0})
	s, err := Compute(a, b, true)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "SignConsistency", s.SignConsistency, 0.75, tol)
	near(t, "Norm", s.Norm, 1.25, tol)
	// Swapping A and B flips Δμ but not the agreement.
	s2, _ := Compute(b, a, true)
	near(t, "SignConsistency swapped", s2.SignConsistency, 0.75, tol)
	if s2.MeanDiff[0] != -1.25 {
		t.Errorf("swapped MeanDiff = %v, want -1.25", s2.MeanDiff[0])
	}
}

func TestComputeDegenerate(t *testing.T) {
	t.Run("identical sets", func(t *testing.T) {
		a := samples(2, []float32{1, 2}, []float32{3, 4})
		s, err := Compute(a, a, true)
		if err != nil {
			t.Fatal(err)
		}
		if s.Norm != 0 || s.Separation != 0 || s.SignConsistency != 0 {
			t.Errorf("Norm %v Separation %v SignConsistency %v, want all 0", s.Norm, s.Separation, s.SignConsistency)
		}
	})
	t.Run("one row each", func(t *testing.T) {
		s, err := Compute(samples(2, []float32{1, 0}), samples(2, []float32{0, 0}), true)
		if err != nil {
			t.Fatal(err)
		}
		if !math.IsNaN(s.Spread) || !math.IsNaN(s.Separation) || !math.IsNaN(s.HeldOut) {
			t.Errorf("Spread %v Separation %v HeldOut %v, want NaN (undefined from one row per set)", s.Spread, s.Separation, s.HeldOut)
		}
		near(t, "SignConsistency", s.SignConsistency, 1, tol)
	})
	t.Run("no spread", func(t *testing.T) {
		a := samples(1, []float32{1}, []float32{1})
		b := samples(1, []float32{0}, []float32{0})
		s, _ := Compute(a, b, false)
		if !math.IsInf(s.Separation, 1) {
			t.Errorf("Separation = %v, want +Inf", s.Separation)
		}
	})
}

// TestComputeRounding: a spread or a mean difference at the level of
// float32 rounding (RoundingLevel of the activations' RMS norm, Scale)
// counts as none: the separation of sets without spread is +Inf and that
// of sets that differ by rounding only is 0, never the ratio of two
// rounding errors (it was 1e16 for some hooks).
func TestComputeRounding(t *testing.T) {
	row := func(v float32) []float32 { return []float32{v, 2 * v, -v, 0.5} }
	a, b := NewSamples(4, 3), NewSamples(4, 3)
	for range 3 {
		a.Append(row(0.1)) // (0.1+0.1+0.1)/3 is not 0.1 in floating point
		b.Append(row(0.3))
	}
	s, err := Compute(a, b, false)
	if err != nil {
		t.Fatal(err)
	}
	// Scale: sqrt of the mean squared row norm, 6·v² + 0.25 per row
	want := math.Sqrt((3*(6*0.01+0.25) + 3*(6*0.09+0.25)) / 6)
	near(t, "Scale", s.Scale, want, 1e-7) // the rows are float32: 1e-7 relative
	if s.StdA != 0 || s.StdB != 0 || s.Spread != 0 || !math.IsInf(s.Separation, 1) {
		t.Errorf("identical rows per set: std %v, %v, spread %v, separation %v; want 0, 0, 0 and +Inf", s.StdA, s.StdB, s.Spread, s.Separation)
	}
	for _, paired := range []bool{false, true} {
		b2 := NewSamples(4, 3)
		for i := range 3 {
			r := row(0.1)
			r[i] = math.Nextafter32(r[i], 1)
			b2.Append(r)
		}
		s2, err := Compute(a, b2, paired)
		if err != nil {
			t.Fatal(err)
		}
		if s2.Norm == 0 || !Negligible(s2.Norm, s2.Scale) || s2.Separation != 0 {
			t.Errorf("paired=%v, rounding-level difference: norm %v (scale %v), separation %v; want a negligible norm and separation 0", paired, s2.Norm, s2.Scale, s2.Separation)
		}
	}
	// a real difference and spread well above the rounding level stay
	c := samples(1, []float32{1}, []float32{1.001})
	d := samples(1, []float32{0}, []float32{0.001})
	s3, _ := Compute(c, d, false)
	// 1.001 and 0.001 are float32: 5e-6 relative off, within 1e-3
	near(t, "Separation", s3.Separation, 1/math.Sqrt(0.001*0.001/2), 1e-3)
}

func TestComputeErrors(t *testing.T) {
	two := samples(2, []float32{1, 2})
	for _, tc := range []struct {
		name   string
		a, b   *Samples
		paired bool
		want   string
	}{
		{"empty A", NewSamples(2, 0), two, false, "at least one"},
		{"widths", samples(3, []float32{1, 2, 3}), two, false, "wide"},
		{"paired counts", samples(2, []float32{1, 2}, []float32{3, 4}), two, true, "equal row counts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compute(tc.a, tc.b, tc.paired)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// randomSets returns nA and nB rows of width d: B is standard normal noise,
// A the same plus shift along a random unit direction, which is returned.
func randomSets(rng *rand.Rand, nA, nB, d int, shift, offset float64) (a, b *Samples, dir []float64) {
	dir = make([]float64, d)
	for j := range dir {
		dir[j] = rng.NormFloat64()
	}
	n := diff.Norm64(dir)
	for j := range dir {
		dir[j] /= n
	}
	a, b = NewSamples(d, nA), NewSamples(d, nB)
	row := make([]float32, d)
	for i := range nA + nB {
		for j := range row {
			row[j] = float32(offset + rng.NormFloat64())
			if i < nA {
				row[j] += float32(shift * dir[j])
			}
		}
		if i < nA {
			a.Append(row)
		} else {
			b.Append(row)
		}
	}
	return a, b, dir
}

func TestComputeIdentities(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, paired := range []bool{false, true} {
		a, b, dir := randomSets(rng, 40, 40, 32, 6, 0)
		s, err := Compute(a, b, paired)
		if err != nil {
			t.Fatal(err)
		}
		// MeanA − MeanB = Δμ·u = ‖Δμ‖ (sums of 40 products: 1e-12 relative)
		near(t, "MeanA−MeanB", s.MeanA-s.MeanB, s.Norm, 1e-12)
		near(t, "Separation", s.Separation, (s.MeanA-s.MeanB)/s.Spread, 1e-12)
		// A shift of 6 standard deviations along dir: Δμ points along dir
		// (noise in the mean of 40 rows is about sqrt(2·32/40) ≈ 1.3 in
		// norm, so the cosine is above 0.9), the sets separate cleanly.
		if c := diff.Dot64(diff.Unit(s.MeanDiff), dir); c < 0.9 {
			t.Errorf("paired=%v: cos(Δμ, planted direction) = %.3f, want > 0.9", paired, c)
		}
		if s.Separation < 4 || s.HeldOut < 0.95 {
			t.Errorf("paired=%v: Separation %.2f, HeldOut %.3f; want > 4 and > 0.95 for a 6σ shift", paired, s.Separation, s.HeldOut)
		}
		// PC1 is oriented so that A projects higher.
		var pa, pb float64
		for i := range a.N {
			pa += diff.Dot(a.Row(i), s.PC.Vec)
		}
		for i := range b.N {
			pb += diff.Dot(b.Row(i), s.PC.Vec)
		}
		if pa/float64(a.N) <= pb/float64(b.N) {
			t.Errorf("paired=%v: A projects %.3f on PC1, B %.3f: A must project higher", paired, pa/float64(a.N), pb/float64(b.N))
		}
		if s.PCCos < 0.9 {
			t.Errorf("paired=%v: cos(PC1, Δμ) = %.3f, want > 0.9 when the shift dominates", paired, s.PCCos)
		}
	}
}

func TestHeldOutLessOptimistic(t *testing.T) {
	// No true difference, few rows, many dimensions: the in-sample
	// separation looks large (Δμ is fitted to the noise), the held-out
	// accuracy stays near chance.
	rng := rand.New(rand.NewPCG(3, 4))
	var sep, acc float64
	const trials = 20
	for range trials {
		a, b, _ := randomSets(rng, 8, 8, 256, 0, 0)
		s, _ := Compute(a, b, false)
		sep += s.Separation / trials
		acc += s.HeldOut / trials
	}
	t.Logf("pure noise, 8+8 rows in 256 dimensions: mean separation %.2f, held-out accuracy %.2f", sep, acc)
	if sep < 2 {
		t.Errorf("mean in-sample separation of pure noise = %.2f; expected it inflated above 2 with 8 rows in 256 dimensions", sep)
	}
	if acc > 0.7 {
		t.Errorf("mean held-out accuracy of pure noise = %.2f, want near 0.5", acc)
	}
}

func TestMeanDiffLargeOffset(t *testing.T) {
	// Residual streams carry large shared components. With an offset of
	// 3000 and a difference of 0.25 (both exact in float32), float32
	// accumulation of 1000 rows would lose the difference in rounding;
	// float64 sums keep it exact.
	a, b := NewSamples(1, 1000), NewSamples(1, 1000)
	for range 1000 {
		a.Append([]float32{3000.25})
		b.Append([]float32{3000})
	}
	s, _ := Compute(a, b, true)
	if s.MeanDiff[0] != 0.25 {
		t.Errorf("MeanDiff = %v, want exactly 0.25", s.MeanDiff[0])
	}
}

func TestPC1ExactAndPowerAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name string
		n, d int
	}{{"wide (Gram)", 30, 80}, {"tall (covariance)", 200, 24}} {
		t.Run(tc.name, func(t *testing.T) {
			// rows: strong component along dir plus noise
			a, b, dir := randomSets(rng, tc.n/2, tc.n-tc.n/2, tc.d, 8, 0.5)
			x := &Samples{N: a.N + b.N, D: a.D, Data: append(append([]float32(nil), a.Data...), b.Data...)}
			for _, center := range []bool{true, false} {
				exact := PC1(x, center, nil)
				old := exactPCAMax
				exactPCAMax = 0
				power := PC1(x, center, nil)
				exactPCAMax = old
				if exact.Iterations != 0 || power.Iterations == 0 {
					t.Fatalf("paths not taken: exact %d iterations, power %d", exact.Iterations, power.Iterations)
				}
				// Both are unit float32 vectors oriented the same way;
				// power iteration stops at 1−cos < 1e-12, and rounding
				// to float32 adds 6e-8 per element.
				if c := diff.Dot(exact.Vec, power.Vec); c < 1-1e-6 {
					t.Errorf("center=%v: cos(exact, power) = %.9f", center, c)
				}
				near(t, "explained", power.Explained, exact.Explained, 1e-6)
				if center {
					if c := math.Abs(diff.Dot64(exact.Vec, dir)); c < 0.9 {
						t.Errorf("|cos(PC1, planted)| = %.3f, want > 0.9 (an 8σ shift against noise from 30 rows in 80 dimensions)", c)
					}
				}
			}
		})
	}
}

func TestPC1Orientation(t *testing.T) {
	// A single row: PC1 is that row up to sign; the sign makes the
	// largest-magnitude element positive.
	pc := PC1(samples(3, []float32{1, -5, 2}), false, nil)
	want := diff.Unit([]float32{-1, 5, -2})
	for i := range want {
		near(t, "PC1", float64(pc.Vec[i]), float64(want[i]), 1e-7)
	}
	near(t, "explained", pc.Explained, 1, 1e-12)
}

func TestHeldOutGroups(t *testing.T) {
	// 1-D, unpaired. A = {3, 3 | 0, 0}, B = {−1, −1 | 1, 1} in two groups
	// each. Worked by hand:
	//   rows left out one at a time: A's 3s right, 0s wrong; B's −1s right,
	//   1s wrong: 4/8.
	//   groups left out: A {3,3} out gives Δμ = 0 (ties, ½ each), A {0,0}
	//   out puts 0 on B's side; B {−1,−1} out: right; B {1,1} out: wrong:
	//   (1 + 0 + 2 + 0)/8.
	rows := func(grouped bool, xs ...float32) *Samples {
		s := NewSamples(1, len(xs))
		for i, x := range xs {
			if grouped {
				s.AppendGroup([]float32{x}, i/2)
			} else {
				s.Append([]float32{x})
			}
		}
		return s
	}
	for _, tc := range []struct {
		grouped bool
		want    float64
	}{{false, 0.5}, {true, 3.0 / 8}} {
		s, err := Compute(rows(tc.grouped, 3, 3, 0, 0), rows(tc.grouped, -1, -1, 1, 1), false)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "HeldOut", s.HeldOut, tc.want, tol)
	}
	// paired sets must group alike
	a := rows(true, 1, 2, 3, 4)
	b := rows(false, 0, 0, 0, 0)
	if _, err := Compute(a, b, true); err == nil {
		t.Error("paired sets with different groups: no error")
	}
	// singleton groups are plain leave-one-out
	x, y, _ := randomSets(rand.New(rand.NewPCG(7, 8)), 10, 10, 16, 1, 0)
	plain, _ := Compute(x, y, true)
	gx, gy := NewSamples(16, 10), NewSamples(16, 10)
	for i := range 10 {
		gx.AppendGroup(x.Row(i), i)
		gy.AppendGroup(y.Row(i), i)
	}
	grouped, _ := Compute(gx, gy, true)
	near(t, "HeldOut singleton groups", grouped.HeldOut, plain.HeldOut, 0)
}
