package llamacpp

import (
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestAgreementLinearRopeScaling is the agreement test of agreement_test.go
// for linear RoPE scaling (<arch>.rope.scaling.type "linear",
// <arch>.rope.scaling.factor 4) on the architectures whose llama.cpp
// graph passes one freq_scale = 1/factor to ggml_rope_ext in every layer:
// the tiny F32 preset of each (gemma2's sliding-window layers included;
// gemma3, which scales its global layers only, is in
// agreement_gemma3_test.go). The factor turns pair 0 of every head by
// 0.75 rad less than plain RoPE from position 1 on: a reference that
// ignores the factor fails every case at z of layer 0 (measured with the
// reference's scaling switched off: worst relative L2 0.42 to 1.04).
//
// Measured (AVX2; first, sentence and 40-token prompts), worst relative L2
// of any hook, under the bounds of the unscaled models: llama 7.14e-7,
// qwen2 5.42e-7, qwen3 5.19e-7, phi3 4.55e-7 (all mlp_out or attn_out);
// gemma2 mlp_out 4.08e-5, the other hooks at most 6.97e-6; gptneox mlp_out
// 2.06e-4, the other hooks at most 8.02e-5, largest absolute logit error
// 3.53e-4.
func TestAgreementLinearRopeScaling(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		preset   string
		edit     func(s *models.SynthSpec)
		bound    bounds
		logitAbs float64
	}{
		{"tiny", nil, exactBounds, 0},
		{"qwen2-tiny", nil, qwen2F32Bounds, 0},
		{"qwen3-tiny", nil, qwen3F32Bounds, 0},
		{"phi3-tiny", nil, phi3F32Bounds, 0},
		{"gemma2-tiny", nil, gemma2F32Bounds, 0},
		// Pythia's partial rotation, scaled: lnF32Bounds for ggml's GELU
		// table (see agreement_arch_test.go)
		{"pythia-70m", func(s *models.SynthSpec) { s.NLayer, s.DModel, s.DFF, s.Type = 3, 64, 256, models.F32 }, lnF32Bounds, 0.001},
	} {
		t.Run(c.preset, func(t *testing.T) {
			spec, err := models.SynthPreset(c.preset)
			if err != nil {
				t.Fatal(err)
			}
			if c.edit != nil {
				c.edit(&spec)
			}
			spec.NCtx, spec.Seed, spec.RopeScaleLinear = 128, 13, 4
			spec.VocabPath = testmodels.Path(t, models.SynthVocab(spec.Arch))
			path := filepath.Join(dir, c.preset+".gguf")
			if err := models.WriteSynthetic(path, spec); err != nil {
				t.Fatal(err)
			}
			runAgreement(t, agreementCase{
				path:     path,
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}
