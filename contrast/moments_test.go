package contrast

import (
	"math"
	"math/rand/v2"
	"testing"
)

// twoPass returns the column means and sample variances of s, summing in
// float64 in two passes: the textbook computation Moments must match.
func twoPass(s *Samples) (mean, variance []float64) {
	mean = s.mean()
	variance = make([]float64, s.D)
	for i := range s.N {
		for j, v := range s.Row(i) {
			d := float64(v) - mean[j]
			variance[j] += d * d
		}
	}
	for j := range variance {
		variance[j] /= float64(s.N - 1)
	}
	return mean, variance
}

// TestMomentsMergeEqualsOnePass splits rows with a large common offset
// (where the naive sum-of-squares formula loses digits) into shards of
// uneven sizes, some empty, and checks that Welford within and Chan across
// shards, merged in several orders, give the two-pass mean and variance.
//
// Tolerance: 1e-12 relative. Both computations are float64 on float32
// inputs; each rounds at about 1e-16 per operation, and the error grows
// with the number of rows (300) and the offset-to-spread ratio (1e3):
// well under 1e-12. A wrong merge formula (n_m·n_o/n dropped, or δ the
// wrong way) is off by O(1).
func TestMomentsMergeEqualsOnePass(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const d = 7
	s := NewSamples(d, 300)
	row := make([]float32, d)
	for range 300 {
		for j := range row {
			row[j] = float32(1000 + float64(j) + r.NormFloat64()*(1+float64(j)))
		}
		s.Append(row)
	}
	wantMean, wantVar := twoPass(s)
	bounds := []int{0, 0, 17, 18, 150, 299, 300} // shards [0,0) [0,17) [17,18) ...
	var shards []*Moments
	for k := 0; k+1 < len(bounds); k++ {
		m := NewMoments(d)
		for i := bounds[k]; i < bounds[k+1]; i++ {
			m.Add(s.Row(i))
		}
		shards = append(shards, m)
	}
	orders := [][]int{{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {2, 0, 5, 1, 4, 3}}
	check := func(name string, m *Moments) {
		t.Helper()
		if m.N != int64(s.N) {
			t.Fatalf("%s: N = %d, want %d", name, m.N, s.N)
		}
		v := m.Variance()
		for j := range d {
			if e := math.Abs(m.Mean[j]-wantMean[j]) / math.Abs(wantMean[j]); e > 1e-12 {
				t.Errorf("%s: mean[%d] = %.17g, two-pass %.17g", name, j, m.Mean[j], wantMean[j])
			}
			if e := math.Abs(v[j]-wantVar[j]) / wantVar[j]; e > 1e-12 {
				t.Errorf("%s: variance[%d] = %.17g, two-pass %.17g", name, j, v[j], wantVar[j])
			}
		}
	}
	one := NewMoments(d)
	one.AddSamples(s)
	check("one pass", one)
	for _, ord := range orders {
		m := NewMoments(0) // an empty Moments takes any width
		for _, k := range ord {
			c := &Moments{N: shards[k].N, Mean: append([]float64(nil), shards[k].Mean...), M2: append([]float64(nil), shards[k].M2...)}
			m.Merge(c)
		}
		check("merged", m)
	}
	// pairwise (tree) merging as a merge of merged parts does
	left, right := NewMoments(d), NewMoments(d)
	for _, k := range []int{0, 1, 2} {
		left.Merge(shards[k])
	}
	for _, k := range []int{3, 4, 5} {
		right.Merge(shards[k])
	}
	left.Merge(right)
	check("tree", left)
}

func TestMomentsFewRows(t *testing.T) {
	m := NewMoments(2)
	if v := m.Variance(); !math.IsNaN(v[0]) {
		t.Errorf("variance of no rows = %v, want NaN", v[0])
	}
	m.Add([]float32{3, -1})
	if v := m.Variance(); !math.IsNaN(v[1]) || m.Mean[0] != 3 {
		t.Errorf("one row: mean %v variance %v", m.Mean, v)
	}
	m.Add([]float32{5, 1})
	if v := m.Variance(); v[0] != 2 || v[1] != 2 || m.Mean[0] != 4 || m.Mean[1] != 0 {
		t.Errorf("two rows: mean %v variance %v, want [4 0] [2 2]", m.Mean, v)
	}
}
