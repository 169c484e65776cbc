package diff

import (
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

func TestTopNeurons(t *testing.T) {
	// a−b = (0, 3, −4, 3, −0.5); |a−b| = (0, 3, 4, 3, 0.5). Indices 1 and 3
	// tie at 3, so index 1 comes first.
	a := []float32{1, 5, -3, 2, 0}
	b := []float32{1, 2, 1, -1, 0.5}
	all := []Neuron{
		{Index: 2, A: -3, B: 1, Diff: -4},
		{Index: 1, A: 5, B: 2, Diff: 3},
		{Index: 3, A: 2, B: -1, Diff: 3},
		{Index: 4, A: 0, B: 0.5, Diff: -0.5},
		{Index: 0, A: 1, B: 1, Diff: 0},
	}
	nan := float32(math.NaN())
	tests := []struct {
		name string
		a, b []float32
		k    int
		want []Neuron
	}{
		{"top 1", a, b, 1, all[:1]},
		{"top 2 splits a tie", a, b, 2, all[:2]},
		{"top 3", a, b, 3, all[:3]},
		{"all", a, b, 5, all},
		{"k beyond length", a, b, 10, all},
		{"k zero", a, b, 0, nil},
		{"k negative", a, b, -1, nil},
		{"empty", nil, nil, 3, nil},
		// All equal differences: index order.
		{"all tied", []float32{1, 1, 1}, []float32{0, 2, 0}, 2,
			[]Neuron{{0, 1, 0, 1}, {1, 1, 2, -1}}},
		// (1, NaN, 0) − (0, 0, 5) = (1, NaN, −5): NaN first, then −5, 1.
		{"NaN first", []float32{1, nan, 0}, []float32{0, 0, 5}, 2,
			[]Neuron{{1, math.NaN(), 0, math.NaN()}, {2, 0, 5, -5}}},
		// +Inf − (+Inf) is NaN; +Inf − 0 is +Inf, above every finite value.
		{"Inf", []float32{float32(math.Inf(1)), 1e30, float32(math.Inf(1))}, []float32{0, 0, float32(math.Inf(1))}, 3,
			[]Neuron{{2, math.Inf(1), math.Inf(1), math.NaN()}, {0, math.Inf(1), 0, math.Inf(1)}, {1, float64(float32(1e30)), 0, float64(float32(1e30))}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TopNeurons(tt.a, tt.b, tt.k)
			if !sameNeurons(got, tt.want) {
				t.Errorf("TopNeurons(k=%d)\n got %v\nwant %v", tt.k, got, tt.want)
			}
		})
	}
}

// sameNeurons compares neurons exactly (the values are copies or exact
// float64 differences of float32 values), with NaN equal to NaN.
func sameNeurons(x, y []Neuron) bool {
	if len(x) != len(y) {
		return false
	}
	eq := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
	for i := range x {
		if x[i].Index != y[i].Index || !eq(x[i].A, y[i].A) || !eq(x[i].B, y[i].B) || !eq(x[i].Diff, y[i].Diff) {
			return false
		}
	}
	return true
}

// TestTopNeuronsHeap checks the heap against a full stable sort on random
// vectors with many ties (small integers), for every k.
func TestTopNeuronsHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 7, 50, 301} {
		a := make([]float32, n)
		b := make([]float32, n)
		for i := range a {
			a[i] = float32(rng.IntN(7) - 3)
			b[i] = float32(rng.IntN(7) - 3)
		}
		ref := make([]Neuron, n)
		for i := range ref {
			ref[i] = Neuron{Index: i, A: float64(a[i]), B: float64(b[i]), Diff: float64(a[i] - b[i])}
		}
		// Stable sort by |Diff| descending keeps lower indices first.
		sort.SliceStable(ref, func(i, j int) bool { return math.Abs(ref[i].Diff) > math.Abs(ref[j].Diff) })
		for k := 1; k <= n+1; k++ {
			got := TopNeurons(a, b, k)
			if want := ref[:min(k, n)]; !reflect.DeepEqual(got, want) {
				t.Fatalf("n=%d k=%d:\n got %v\nwant %v", n, k, got, want)
			}
		}
	}
}
