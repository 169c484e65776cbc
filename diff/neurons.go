package diff

import (
	"math"
	"slices"
)

// Neuron is one dimension of an activation vector in prompts A and B.
type Neuron struct {
	Index int
	A, B  float64
	Diff  float64 // A − B
}

// before reports whether x ranks before y in TopNeurons: larger |Diff| first,
// NaN before everything, then the lower index.
func before(x, y Neuron) bool {
	ax, ay := math.Abs(x.Diff), math.Abs(y.Diff)
	nx, ny := math.IsNaN(ax), math.IsNaN(ay)
	switch {
	case nx != ny:
		return nx
	case !nx && ax != ay:
		return ax > ay
	}
	return x.Index < y.Index
}

// TopNeurons returns the k dimensions i with the largest |a[i]−b[i]|, sorted
// by descending |Diff|; ties go to the lower index. A NaN difference, from
// NaN or Inf activations, ranks first so that it is seen. If k exceeds
// len(a), every dimension is returned; if k <= 0, none. It panics if
// len(a) != len(b).
//
// TopNeurons keeps a heap of k candidates, so it takes O(n log k) time and
// allocates only the result.
func TopNeurons(a, b []float32, k int) []Neuron {
	if len(a) != len(b) {
		panic(lenMismatch)
	}
	k = min(k, len(a))
	if k <= 0 {
		return nil
	}
	// h is a heap whose root h[0] is the candidate that ranks last.
	h := make([]Neuron, 0, k)
	for i, av := range a {
		x, y := float64(av), float64(b[i])
		n := Neuron{Index: i, A: x, B: y, Diff: x - y}
		if len(h) < k {
			h = append(h, n)
			siftUp(h, len(h)-1)
			continue
		}
		if before(n, h[0]) {
			h[0] = n
			siftDown(h, 0)
		}
	}
	slices.SortFunc(h, func(x, y Neuron) int {
		if before(x, y) {
			return -1
		}
		if before(y, x) {
			return 1
		}
		return 0
	})
	return h
}

// siftUp and siftDown keep h ordered with the last-ranking neuron at the root:
// no child ranks after its parent.
func siftUp(h []Neuron, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !before(h[p], h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func siftDown(h []Neuron, i int) {
	for {
		last := i
		if l := 2*i + 1; l < len(h) && before(h[last], h[l]) {
			last = l
		}
		if r := 2*i + 2; r < len(h) && before(h[last], h[r]) {
			last = r
		}
		if last == i {
			return
		}
		h[i], h[last] = h[last], h[i]
		i = last
	}
}
