package llamacpp

import (
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestRepackReadsInsteadOfMapping: a model whose matrices ggml repacks
// (Q4_0 here) is read, not mapped, so that the file's pages do not stay
// resident beside the repacked copy (peak memory twice the file); --mmap
// maps it anyway, --no-repack keeps it as stored and mapped. A model with
// nothing to repack (F32, Q8_0) stays mapped.
func TestRepackReadsInsteadOfMapping(t *testing.T) {
	spec, err := models.SynthPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	spec.Type = models.Q4_0
	q4 := filepath.Join(t.TempDir(), "tiny-q4_0.gguf")
	if err := models.WriteSynthetic(q4, spec); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name             string
		path             string
		p                ModelParams
		repacked, mapped bool
	}{
		{"Q4_0", q4, ModelParams{}, true, false},
		{"Q4_0 --mmap", q4, ModelParams{Mmap: true}, true, true},
		{"Q4_0 --no-repack", q4, ModelParams{NoRepack: true}, false, true},
		{"Q4_0 --no-mmap --no-repack", q4, ModelParams{NoRepack: true, NoMmap: true}, false, false},
		{"F32", testmodels.Path(t, testmodels.Stories260K), ModelParams{}, false, true},
		{"Q8_0", testmodels.Path(t, testmodels.TinyStories656KQ8), ModelParams{}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := LoadModel(c.path, c.p)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Repacked() != c.repacked || m.Mapped() != c.mapped {
				t.Errorf("repacked %v, mapped %v; want %v, %v", m.Repacked(), m.Mapped(), c.repacked, c.mapped)
			}
			// Every way of loading computes the same prediction.
			toks, err := m.Tokenize(" Once upon a time", TokenizeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := runOneErr(m, toks); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func runOneErr(m *Model, toks []int32) ([]*models.Cache, error) {
	c, err := m.NewContext(ContextParams{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Run([][]int32{toks}, RunOptions{})
}
