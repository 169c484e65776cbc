//go:build cgo

package analysis

import (
	"testing"

	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

func init() {
	engines = append(engines, engine{name: "llamacpp", open: openLlama})
}

func openLlama(t *testing.T, path string) models.Engine {
	t.Helper()
	m, err := llamacpp.LoadModel(path, llamacpp.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return llamacpp.NewEngine(m, llamacpp.EngineParams{Context: llamacpp.ContextParams{Threads: 2}, Unembed: llamacpp.UnembedOptions{Threads: 2}})
}
