package cli

import (
	"math"

	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

func llamaRun(hooks []models.Hook) llamacpp.RunOptions {
	return llamacpp.RunOptions{Hooks: hooks}
}

func rowNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
