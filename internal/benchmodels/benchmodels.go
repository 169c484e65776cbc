// Package benchmodels writes the synthetic models that benchmarks use once
// per machine and reuses them.
package benchmodels

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lldiff/lldiff/models"
)

// Synthetic returns the path of the synthetic model of a preset (see
// models.SynthPreset) with matrices of type t and the architecture's shipped
// vocabulary. It writes the model once into $TMPDIR/lldiff-bench and reuses
// it afterwards: WriteSynthetic is deterministic, so a file left by an
// earlier run, or written meanwhile by another process, has the same bytes.
func Synthetic(preset string, t models.GGMLType) (string, error) {
	spec, err := models.SynthPreset(preset)
	if err != nil {
		return "", err
	}
	spec.Type = t
	cache := filepath.Join(os.TempDir(), "lldiff-bench")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(cache, fmt.Sprintf("%s-%s.gguf", preset, t))
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := models.WriteSynthetic(p, spec); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return p, nil
}
