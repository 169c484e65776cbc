package analysis

import (
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// engine is one engine the analyses' tests run on.
type engine struct {
	name string
	open func(t *testing.T, path string) models.Engine
}

// engines are the reference (always) and llama.cpp (when built with cgo,
// engines_cgo_test.go): every analysis test runs on each.
var engines = []engine{{name: "reference", open: openReference}}

func openReference(t *testing.T, path string) models.Engine {
	t.Helper()
	e, err := reference.NewEngine(path)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// forEngines runs f on every engine with the model at path.
func forEngines(t *testing.T, path string, f func(t *testing.T, e models.Engine)) {
	for _, en := range engines {
		t.Run(en.name, func(t *testing.T) { f(t, en.open(t, path)) })
	}
}

// stories is the shared stories260K model (5 layers, d_model 64, F32).
func stories(t *testing.T) string { return testmodels.Path(t, testmodels.Stories260K) }
