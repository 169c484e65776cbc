package contrast

import "math"

// Moments are the count, mean and M2 (sum of squared deviations from the
// mean) of a stream of rows, per column, in float64: the statistics of a
// shard of a contrast that merge exactly. Add folds in one row with
// Welford's update; Merge folds in another Moments with the pairwise
// formula of Chan, Golub and LeVeque (1979), so that the moments of a
// dataset split into shards, computed shard by shard and merged, equal
// those of one pass to float64 rounding, in any order.
type Moments struct {
	N    int64
	Mean []float64
	M2   []float64
}

// NewMoments returns the moments of no rows of width d.
func NewMoments(d int) *Moments {
	return &Moments{Mean: make([]float64, d), M2: make([]float64, d)}
}

// Add folds in one row (Welford). It panics if len(row) != len(m.Mean).
func (m *Moments) Add(row []float32) {
	if len(row) != len(m.Mean) {
		panic("contrast: Moments.Add: row length does not match the width")
	}
	m.N++
	inv := 1 / float64(m.N)
	for j, v := range row {
		x := float64(v)
		d := x - m.Mean[j]
		m.Mean[j] += d * inv
		m.M2[j] += d * (x - m.Mean[j])
	}
}

// AddSamples folds in every row of s.
func (m *Moments) AddSamples(s *Samples) {
	for i := range s.N {
		m.Add(s.Row(i))
	}
}

// Merge folds o into m (Chan et al.): with δ = mean_o − mean_m and
// n = n_m + n_o, mean = mean_m + δ·n_o/n and M2 = M2_m + M2_o +
// δ²·n_m·n_o/n. Moments of no rows are the identity, whatever their width.
// It panics if both hold rows and their widths differ.
func (m *Moments) Merge(o *Moments) {
	switch {
	case o.N == 0:
		return
	case m.N == 0:
		m.N = o.N
		m.Mean = append(m.Mean[:0], o.Mean...)
		m.M2 = append(m.M2[:0], o.M2...)
		return
	case len(m.Mean) != len(o.Mean):
		panic("contrast: Moments.Merge: widths differ")
	}
	n := m.N + o.N
	fm, fo, fn := float64(m.N), float64(o.N), float64(n)
	for j := range m.Mean {
		d := o.Mean[j] - m.Mean[j]
		m.Mean[j] += d * fo / fn
		m.M2[j] += o.M2[j] + d*d*fm*fo/fn
	}
	m.N = n
}

// Variance returns the sample variance of each column (M2/(N−1)); NaN for
// fewer than 2 rows.
func (m *Moments) Variance() []float64 {
	v := make([]float64, len(m.M2))
	for j, x := range m.M2 {
		if m.N < 2 {
			v[j] = math.NaN()
			continue
		}
		v[j] = x / float64(m.N-1)
	}
	return v
}
