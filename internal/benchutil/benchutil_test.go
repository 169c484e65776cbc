package benchutil

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	in := ms(9, 1, 5)
	if got := Median(in); got != 5*time.Millisecond {
		t.Errorf("Median(9,1,5) = %v, want 5ms", got)
	}
	if in[0] != 9*time.Millisecond {
		t.Errorf("Median sorted its argument: %v", in)
	}
	if got := Median(ms(4, 1, 3, 2)); got != 2500*time.Microsecond {
		t.Errorf("Median(4,1,3,2) = %v, want 2.5ms", got)
	}
	if got := Median([]time.Duration(nil)); got != 0 {
		t.Errorf("Median(nil) = %v", got)
	}
	// per-round ratios 1.0, 1.1, 3.0 (a burst of load in the last round):
	// the median is 1.1, the ratio of sums would be 1.5
	num, den := ms(100, 110, 300), ms(100, 100, 100)
	if got := MedianRatio(num, den); got < 1.0999 || got > 1.1001 {
		t.Errorf("MedianRatio = %v, want 1.1", got)
	}
	// even count, and a longer num: the extra round is left out
	if got := MedianRatio(ms(10, 30, 99), ms(10, 10)); got != 2 {
		t.Errorf("MedianRatio even = %v, want 2", got)
	}
	if got := MedianRatio(nil, nil); got != 0 {
		t.Errorf("MedianRatio(nil) = %v", got)
	}
}

// TestRounds checks that Rounds tops up b.Loop's iterations to the
// minimum: rounds of 150 ms give b.Loop about 7 iterations in its default
// second, fewer than 12.
func TestRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about two seconds")
	}
	var n, loops int
	testing.Benchmark(func(b *testing.B) {
		n = 0
		Rounds(b, 12, func() {
			n++
			time.Sleep(150 * time.Millisecond)
		})
		loops = b.N
	})
	if n < 12 {
		t.Errorf("Rounds ran %d rounds (b.Loop %d), want at least 12", n, loops)
	}
}
