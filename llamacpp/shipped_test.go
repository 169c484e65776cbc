package llamacpp

import (
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestLoadSharedModels loads every model that ships in testdata/models
// through llama.cpp and checks what its MANIFEST.md says of it: layers,
// d_model and vocabulary size, and that each vocabulary tokenizes a word
// into known tokens.
func TestLoadSharedModels(t *testing.T) {
	for _, c := range []struct {
		name           string
		vocabOnly      bool
		layers, dModel int
		vocab          int
	}{
		{testmodels.Stories260K, false, 5, 64, 512},
		{testmodels.TinyStories656KF16, false, 2, 128, 2048},
		{testmodels.TinyStories656KQ8, false, 2, 128, 2048},
		{testmodels.VocabLlamaSPM, true, 0, 0, 32000},
		{testmodels.VocabGPT2, true, 0, 0, 50257},
		{testmodels.VocabGPTNeoX, true, 0, 0, 50432},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := LoadModel(testmodels.Path(t, c.name), ModelParams{VocabOnly: c.vocabOnly})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.NVocab() != c.vocab {
				t.Errorf("vocabulary %d, want %d", m.NVocab(), c.vocab)
			}
			if !c.vocabOnly && (m.NLayer() != c.layers || m.NEmbd() != c.dModel) {
				t.Errorf("%d layers, d_model %d; want %d, %d", m.NLayer(), m.NEmbd(), c.layers, c.dModel)
			}
			toks, err := m.Tokenize(" Once upon a time", TokenizeOptions{})
			if err != nil || len(toks) == 0 {
				t.Fatalf("tokenize: %v, %v", toks, err)
			}
			for _, id := range toks {
				if id < 0 || int(id) >= c.vocab {
					t.Errorf("token id %d outside the vocabulary", id)
				}
			}
		})
	}
}
