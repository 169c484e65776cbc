package diff

import (
	"math/rand/v2"
	"testing"
)

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// BenchmarkCosine is one residual-stream vector of a 4096-wide model.
func BenchmarkCosine(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, y := randVec(rng, 4096), randVec(rng, 4096)
	b.SetBytes(2 * 4 * 4096)
	for b.Loop() {
		Cosine(x, y)
	}
}

// BenchmarkTopNeurons is the top 20 logits of a 32000-token vocabulary.
func BenchmarkTopNeurons(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	x, y := randVec(rng, 32000), randVec(rng, 32000)
	for b.Loop() {
		TopNeurons(x, y, 20)
	}
}
