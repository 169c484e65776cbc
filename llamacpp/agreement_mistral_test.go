package llamacpp

import (
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestAgreementMistral runs the agreement test on Mistral-style llama
// models (the mistral-tiny preset: 4 query heads per kv head, rope base
// 1e6, untied; Mistral 7B v0.3 has no sliding window), F32 and Q8_0, up to
// 40 tokens. The F32 bound is llama's 1e-4 (measured at most 4.59e-7,
// mlp_out); the Q8_0 bounds are 1.3 times the worst measured here,
// rounded up to two digits (an argmax that differs is then allowed where
// the two logits are within the absolute bound: a near-tie).
func TestAgreementMistral(t *testing.T) {
	dir := t.TempDir()
	q8 := bounds{
		models.ResidPre:  0.013, // measured 0.00945
		models.Z:         0.021, // measured 0.0160
		models.AttnOut:   0.027, // measured 0.0201
		models.ResidMid:  0.016, // measured 0.0117
		models.MLPOut:    0.030, // measured 0.0225
		models.ResidPost: 0.020, // measured 0.0152
		models.LnFinal:   0.020, // measured 0.0151
		models.Logits:    0.023, // measured 0.0172
	}
	for _, c := range []struct {
		name     string
		typ      models.GGMLType
		bound    bounds
		logitAbs float64 // see agreementCase
	}{
		{"mistral-F32", models.F32, exactBounds, 0},
		{"mistral-Q8_0", models.Q8_0, q8, 0.097}, // measured 0.0743
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, err := models.SynthPreset("mistral-tiny")
			if err != nil {
				t.Fatal(err)
			}
			spec.Type, spec.Seed, spec.VocabPath = c.typ, 29, testmodels.Path(t, models.SynthVocab("llama"))
			path := filepath.Join(dir, c.name+".gguf")
			if err := models.WriteSynthetic(path, spec); err != nil {
				t.Fatal(err)
			}
			runAgreement(t, agreementCase{path: path, prompts: []prompt{promptFirst, promptSentence, prompt40}, bound: c.bound, logitAbs: c.logitAbs})
		})
	}
}
