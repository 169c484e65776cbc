package llamacpp

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestPaddedVocab checks synthetic models whose vocabulary is padded with
// unused tokens (SynthSpec.VocabSize, as the -shape presets of Gemma and Qwen
// do): llama.cpp loads the padded size, tokenizes text exactly as the
// unpadded model does (no text maps to an unused token), and every hook and
// the logits of all padded-vocabulary rows still agree with the reference.
// Both tokenizer kinds: SentencePiece with scores (gemma3, Llama 2's
// vocabulary) and BPE without them (qwen2, GPT-2's).
func TestPaddedVocab(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		spec  models.SynthSpec
		pad   int
		bound bounds
	}{
		{"gemma3", gemma3Spec(t, models.F32, false, 0), 1500, gemma3F32Bounds},
		{"qwen2", models.SynthSpec{Arch: "qwen2", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, DFF: 128, NCtx: 128, Type: models.F32, Untied: true, Seed: 5,
			VocabPath: testmodels.Path(t, models.SynthVocab("qwen2"))}, 777, qwen2F32Bounds},
	} {
		t.Run(c.name, func(t *testing.T) {
			plain := filepath.Join(dir, c.name+"-plain.gguf")
			if err := models.WriteSynthetic(plain, c.spec); err != nil {
				t.Fatal(err)
			}
			mp, err := LoadModel(plain, ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer mp.Close()
			padded := c.spec
			padded.VocabSize = mp.NVocab() + c.pad
			path := filepath.Join(dir, c.name+"-padded.gguf")
			if err := models.WriteSynthetic(path, padded); err != nil {
				t.Fatal(err)
			}
			m, err := LoadModel(path, ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.NVocab() != padded.VocabSize {
				t.Fatalf("llama.cpp loaded %d tokens, want the padded %d", m.NVocab(), padded.VocabSize)
			}
			if got, want := m.Printable(int32(mp.NVocab())), "<unused_0>"; got != want {
				t.Errorf("first padded token reads %q, want %q", got, want)
			}
			for _, text := range []string{storyText, "<unused_0> <unused_12> plain words", "  spaces\tand\nnewlines ü ∑ 🙂"} {
				for _, special := range []bool{false, true} {
					o := TokenizeOptions{ParseSpecial: special}
					a, err := mp.Tokenize(text, o)
					if err != nil {
						t.Fatal(err)
					}
					b, err := m.Tokenize(text, o)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(a, b) {
						t.Errorf("padding changed the tokenization of %.30q (special %v):\n plain  %v\n padded %v", text, special, a, b)
					}
				}
			}
			m.Close()
			runAgreement(t, agreementCase{path: path, prompts: []prompt{promptFirst, promptSentence}, bound: c.bound})
		})
	}
}
