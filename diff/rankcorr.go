package diff

import (
	"cmp"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

// Spearman returns Spearman's rank correlation between x and y: the Pearson
// correlation of their ranks, with tied values given the average of the
// ranks they span. It is 1 when y increases with x, -1 when it decreases.
// gonum/stat has Pearson (stat.Correlation) and Kendall but no Spearman, so
// Spearman ranks the samples here and calls stat.Correlation.
//
// Spearman returns NaN when the correlation is undefined: fewer than two
// samples, all values of x or of y equal, or a NaN in x or y. It panics if
// len(x) != len(y).
func Spearman(x, y []float64) float64 {
	if len(x) != len(y) {
		panic(lenMismatch)
	}
	if len(x) < 2 || slices.ContainsFunc(x, math.IsNaN) || slices.ContainsFunc(y, math.IsNaN) {
		return math.NaN()
	}
	rx := fractionalRanks(make([]float64, len(x)), x)
	ry := fractionalRanks(make([]float64, len(y)), y)
	return stat.Correlation(rx, ry, nil)
}

// fractionalRanks stores in dst the 1-based ranks of x in ascending order,
// tied values taking the mean of the ranks they span, and returns dst. x must
// not contain NaN. It panics if len(dst) != len(x).
func fractionalRanks(dst, x []float64) []float64 {
	if len(dst) != len(x) {
		panic(lenMismatch)
	}
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int { return cmp.Compare(x[i], x[j]) })
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && x[idx[j]] == x[idx[i]] {
			j++
		}
		// Sorted positions i..j-1 hold ranks i+1..j; their mean is (i+1+j)/2.
		r := float64(i+1+j) / 2
		for _, k := range idx[i:j] {
			dst[k] = r
		}
		i = j
	}
	return dst
}
