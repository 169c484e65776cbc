package llamacpp

import (
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The tests in this file are the agreement tests of agreement_test.go for
// qwen3 (Qwen3): qwen2 without the q, k and v biases and with an RMSNorm of
// each query and key head before RoPE (llama.cpp's src/models/qwen3.cpp),
// on small synthetic models whose 4 heads of 32 span twice d_model 64, as
// Qwen3's heads may (Qwen3-0.6B: 16 heads of 128 over 1024), with the
// GPT-2 vocabulary standing in for Qwen's. The synthetic head-norm weights
// are 1 + 0.1·N(0,1), so a forgotten one shows as an error of order 0.1.
//
// Bounds are 1.3 times the worst relative L2 error measured over the
// cases below and the three prompts (1 token, a sentence, 40 tokens), rounded up to
// two digits; the measurements are written beside the values. The head
// norms divide by the RMS of each head, a float32 sum of 32 squares on
// ggml's side, which is rounding-level; the rest is as for qwen2 (see
// agreement_qwen2_test.go).

// qwen3F32Bounds are for F32 weights and an F32 KV cache: llama's 1e-4.
// Measured here (AVX2) at most 6.11e-7 (mlp_out; resid_pre 2.54e-7, z
// 3.31e-7, attn_out 3.95e-7, logits 3.21e-7); another CPU's SIMD width
// sums in another order, so the bound is the one of every F32 case. A
// changed head-norm weight moves z by far more
// (TestAgreementQwen3DetectsChangedHeadNorm).
var qwen3F32Bounds = exactBounds

// qwen3F16Bounds are for F16 weights.
var qwen3F16Bounds = bounds{
	models.ResidPre:  4.6e-4, // measured 3.49e-4
	models.Z:         7.0e-4, // measured 5.36e-4
	models.AttnOut:   9.5e-4, // measured 7.26e-4
	models.ResidMid:  5.6e-4, // measured 4.24e-4
	models.MLPOut:    1.1e-3, // measured 7.86e-4
	models.ResidPost: 6.3e-4, // measured 4.79e-4
	models.LnFinal:   6.2e-4, // measured 4.75e-4
	models.Logits:    6.9e-4, // measured 5.26e-4
}

// qwen3Q8Bounds are for Q8_0 weights.
var qwen3Q8Bounds = bounds{
	models.ResidPre:  0.016, // measured 0.0120
	models.Z:         0.019, // measured 0.0143
	models.AttnOut:   0.021, // measured 0.0154
	models.ResidMid:  0.016, // measured 0.0120
	models.MLPOut:    0.045, // measured 0.0339
	models.ResidPost: 0.020, // measured 0.0147
	models.LnFinal:   0.019, // measured 0.0145
	models.Logits:    0.020, // measured 0.0151
}

// writeQwen3Model writes a synthetic qwen3 model: 2 layers, d_model 64 in
// 4 heads of 32 (2 kv heads), d_ff 128, 128 positions, rope base 1000000,
// tied unless untied, the GPT-2 vocabulary, seed 13.
func writeQwen3Model(t *testing.T, dir, name string, typ models.GGMLType, untied bool) string {
	t.Helper()
	spec := models.SynthSpec{
		Arch: "qwen3", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 128,
		Type: typ, Untied: untied, Seed: 13,
		VocabPath: testmodels.Path(t, models.SynthVocab("qwen3")),
	}
	path := filepath.Join(dir, name+".gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgreementQwen3(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		typ      models.GGMLType
		untied   bool
		bound    bounds
		logitAbs float64
	}{
		{"qwen3-F32-tied", models.F32, false, qwen3F32Bounds, 0},
		{"qwen3-F16-untied", models.F16, true, qwen3F16Bounds, 0.0032}, // measured 0.0024
		{"qwen3-Q8_0-tied", models.Q8_0, false, qwen3Q8Bounds, 0.76},   // measured 0.581 (tied: logits of σ about 8)
	} {
		t.Run(c.name, func(t *testing.T) {
			runAgreement(t, agreementCase{
				path:     writeQwen3Model(t, dir, c.name, c.typ, c.untied),
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}

// TestAgreementQwen3DetectsChangedHeadNorm shows that the comparison sees
// qwen3's head norms: one weight of blk.1.attn_q_norm.weight or
// blk.1.attn_k_norm.weight is changed by 1 (ten times their deviation) in
// the file llama.cpp runs, while the reference runs the original. Every
// hook before z of layer 1 must agree; z of layer 1 must not (the first
// position excepted: it attends to itself alone, whatever q and k are).
func TestAgreementQwen3DetectsChangedHeadNorm(t *testing.T) {
	dir := t.TempDir()
	orig := writeQwen3Model(t, dir, "qwen3", models.F32, false)
	f, err := models.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"attn_q_norm", "attn_k_norm"} {
		t.Run(n, func(t *testing.T) {
			name := "blk.1." + n + ".weight"
			ti, ok := f.Tensor(name)
			if !ok {
				t.Fatalf("no %s", name)
			}
			changed := filepath.Join(dir, n+"-changed.gguf")
			writeChanged(t, f, ti, 5, 1, changed)
			m, ref := loadWithReference(t, changed, orig)
			firstBad := models.Hook{Kind: models.Z, Layer: 1}
			before := true
			for _, d := range compareRun(t, m, ref, promptSentence.tokens(t, m)) {
				before = before && d.hook != firstBad
				err := reference.Compare(d.hook.Name(), d.got, d.want, qwen3F32Bounds[d.hook.Kind])
				switch {
				case before && err != nil:
					t.Errorf("%s is computed before the changed norm is used, yet: %v", d.hook.Name(), err)
				case d.hook == firstBad && err == nil:
					t.Errorf("%s agrees with the reference (worst %.3g) although llama.cpp ran a changed %s", d.hook.Name(), d.worst(), name)
				}
			}
		})
	}
}

// TestCaptureIdentitiesQwen3 runs the residual identities of
// TestCaptureIdentities on a synthetic qwen3 model, whose attn_out is the
// unnamed MUL_MAT that reads blk.L.attn_output.weight.
func TestCaptureIdentitiesQwen3(t *testing.T) {
	m, err := LoadModel(writeQwen3Model(t, t.TempDir(), "qwen3", models.Q8_0, true), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkCaptureIdentities(t, m, "Once upon a time, there was a little girl named Lily.")
}
