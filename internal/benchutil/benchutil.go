// Package benchutil holds what lldiff's ratio benchmarks share: each target
// of make bench is a ratio of two sides timed alternately in one process,
// reported as the median of per-round ratios.
package benchutil

import (
	"slices"
	"testing"
	"time"
)

// MinRounds is the fewest alternating rounds a ratio benchmark times, so
// that its median means something under make bench's -benchtime=3x.
const MinRounds = 15

// Median returns the median of v, durations or plain numbers (the mean of
// the middle two for an even count, 0 for none); v is not changed.
func Median[T ~int64 | ~float64](v []T) T { return middle(slices.Clone(v)) }

// MedianRatio is the median over rounds of num[i] ÷ den[i] (rounds past the
// shorter slice are left out; 0 for none). Each round's two sides ran back
// to back, so their ratio cancels the load of that moment, and the median
// drops the rounds a burst of load hit on one side only: on the CI's VM a
// single round can be 20 % off, and sums over three rounds moved a ratio by
// ±5 %.
func MedianRatio(num, den []time.Duration) float64 {
	r := make([]float64, min(len(num), len(den)))
	for i := range r {
		r[i] = num[i].Seconds() / den[i].Seconds()
	}
	return middle(r)
}

// middle sorts s and returns its median (the mean of the middle two for an
// even count, 0 for none).
func middle[T ~int64 | ~float64](s []T) T {
	slices.Sort(s)
	n := len(s)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Rounds runs round at least min times: once per iteration of b.Loop (so
// that -benchtime sets the count, and the benchmark function runs once,
// not again with b.N = 1 first), then as many more as it takes to reach
// min. The rounds past b.Loop's are not in ns/op; the ratio benchmarks
// report their own metrics from each round's times.
func Rounds(b *testing.B, min int, round func()) {
	n := 0
	for b.Loop() {
		round()
		n++
	}
	for ; n < min; n++ {
		round()
	}
}
