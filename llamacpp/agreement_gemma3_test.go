package llamacpp

import (
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// The tests in this file are the agreement tests of agreement_test.go for
// gemma3 (Gemma 3, llama.cpp's src/models/gemma3.cpp with its sliding
// window): gemma2's layer with per-head q and k RMSNorms, no attention
// soft-cap, and five sliding-window layers (window 8, rope base 10000) to
// each global one (rope base 1000000), on synthetic models of 6 layers,
// d_model 64 in 4 heads of 32 (2 kv heads), d_ff 128, Llama 2's
// vocabulary standing in for Gemma's. The 18- and 40-token prompts reach
// past the window; the sixth layer attends to all of them with the other
// base, so a wrong pattern or base moves its z by order 1. One case sets a
// final soft-cap of 5 (Gemma 3 has none; llama.cpp applies one when the
// file sets it).
//
// Bounds are 1.3 times the worst relative L2 error measured over the
// cases below and the three prompts, rounded up to two digits; see
// agreement_gemma2_test.go for what the errors are made of.

// gemma3F32Bounds are for F32 weights and an F32 KV cache: llama's 1e-4,
// except mlp_out (gemmaF32MLPBound, see agreement_gemma2_test.go).
// Measured here (AVX2): mlp_out 2.92e-4 at single positions of the
// 40-token prompt, every other hook at most 5.49e-5 (resid_post), the
// flipped GELU inputs carried into the residual stream.
var gemma3F32Bounds = withMLPOut(exactBounds, gemmaF32MLPBound)

// gemma3F16Bounds are for F16 weights.
var gemma3F16Bounds = bounds{
	models.ResidPre:  3.0e-4, // measured 2.30e-4
	models.Z:         7.4e-4, // measured 5.66e-4
	models.AttnOut:   8.6e-4, // measured 6.57e-4
	models.ResidMid:  3.1e-4, // measured 2.38e-4
	models.MLPOut:    1.4e-3, // measured 1.03e-3
	models.ResidPost: 3.2e-4, // measured 2.43e-4
	models.LnFinal:   3.2e-4, // measured 2.43e-4
	models.Logits:    4.8e-4, // measured 3.64e-4
}

// gemma3Q8Bounds are for Q8_0 weights.
var gemma3Q8Bounds = bounds{
	models.ResidPre:  0.0072, // measured 0.00548
	models.Z:         0.017,  // measured 0.0124
	models.AttnOut:   0.020,  // measured 0.0148
	models.ResidMid:  0.0075, // measured 0.00575
	models.MLPOut:    0.026,  // measured 0.0197
	models.ResidPost: 0.0083, // measured 0.00636
	models.LnFinal:   0.0083, // measured 0.00634
	models.Logits:    0.011,  // measured 0.00827
}

// writeGemma3Model writes the synthetic gemma3 model of the tests in this
// file, seed 23.
func writeGemma3Model(t *testing.T, dir, name string, typ models.GGMLType, untied bool, finalCap float64) string {
	t.Helper()
	spec := models.SynthSpec{
		Arch: "gemma3", NLayer: 6, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 128,
		SlidingWindow: 8, FinalSoftcap: finalCap, Type: typ, Untied: untied, Seed: 23,
		VocabPath: testmodels.Path(t, models.SynthVocab("gemma3")),
	}
	path := filepath.Join(dir, name+".gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgreementGemma3(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		typ      models.GGMLType
		untied   bool
		finalCap float64
		bound    bounds
		logitAbs float64
	}{
		{"gemma3-F32", models.F32, false, 0, gemma3F32Bounds, 0},
		{"gemma3-F32-untied-cap5", models.F32, true, 5, gemma3F32Bounds, 0},
		{"gemma3-F16", models.F16, false, 0, gemma3F16Bounds, 0.018}, // measured 0.0133
		{"gemma3-Q8_0", models.Q8_0, false, 0, gemma3Q8Bounds, 0.38}, // measured 0.291
	} {
		t.Run(c.name, func(t *testing.T) {
			runAgreement(t, agreementCase{
				path:     writeGemma3Model(t, dir, c.name, c.typ, c.untied, c.finalCap),
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}

// TestCaptureIdentitiesGemma3 runs the residual identities on gemma3
// (attn_out and mlp_out after the post-norms).
func TestCaptureIdentitiesGemma3(t *testing.T) {
	m, err := LoadModel(writeGemma3Model(t, t.TempDir(), "gemma3", models.Q8_0, false, 0), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkCaptureIdentities(t, m, "Once upon a time, there was a little girl named Lily.")
}
