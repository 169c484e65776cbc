package llamacpp

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// The tests in this file are the agreement tests of agreement_test.go for
// phi3 (Phi-3): llama with one fused Q|K|V matrix whose product llama.cpp
// views as Q, K and V, one fused gate|up matrix split by ggml_swiglu, and
// NEOX rotary embeddings (llama.cpp's src/models/phi3.cpp; this llama.cpp
// turns Phi-3's sliding window off). The models are small synthetic ones
// with Llama 2's vocabulary standing in for Phi-3's. A wrong split of
// either fused matrix (Q and K swapped, gate and up swapped) moves every
// hook after it by order 1, far above any bound.
//
// Bounds are 1.3 times the worst relative L2 error measured over the
// cases below and the three prompts, rounded up to two digits; the
// measurements are written beside the values. The arithmetic is llama's
// (see agreement_qwen2_test.go): F32 weights agree to summation order, F16
// and Q8_0 weights carry ggml's rounding of each product's input.

// phi3F32Bounds are for F32 weights and an F32 KV cache: llama's 1e-4.
// Measured here (AVX2) at most 5.49e-7 (mlp_out; z 3.40e-7, attn_out
// 4.17e-7, logits 3.16e-7).
var phi3F32Bounds = exactBounds

// phi3F16Bounds are for F16 weights (there is no resid_mid hook).
var phi3F16Bounds = bounds{
	models.ResidPre:  4.9e-4, // measured 3.73e-4
	models.Z:         7.5e-4, // measured 5.75e-4
	models.AttnOut:   8.8e-4, // measured 6.72e-4
	models.MLPOut:    1.3e-3, // measured 1.00e-3
	models.ResidPost: 8.0e-4, // measured 6.15e-4
	models.LnFinal:   8.1e-4, // measured 6.19e-4
	models.Logits:    7.8e-4, // measured 5.95e-4
}

// phi3Q8Bounds are for Q8_0 weights.
var phi3Q8Bounds = bounds{
	models.ResidPre:  0.013, // measured 0.0098
	models.Z:         0.025, // measured 0.0186
	models.AttnOut:   0.025, // measured 0.0185
	models.MLPOut:    0.031, // measured 0.0231
	models.ResidPost: 0.019, // measured 0.0140
	models.LnFinal:   0.019, // measured 0.0142
	models.Logits:    0.020, // measured 0.0150
}

// writePhi3Model writes a synthetic phi3 model: 2 layers, d_model 64 in 4
// heads of 16 (kv heads as given), d_ff 128, 128 positions, untied, Llama
// 2's vocabulary, seed 17.
func writePhi3Model(t *testing.T, dir, name string, typ models.GGMLType, nKV int) string {
	t.Helper()
	spec := models.SynthSpec{
		Arch: "phi3", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: nKV, DFF: 128, NCtx: 128,
		Type: typ, Untied: true, Seed: 17,
		VocabPath: testmodels.Path(t, models.SynthVocab("phi3")),
	}
	path := filepath.Join(dir, name+".gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgreementPhi3(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		typ      models.GGMLType
		nKV      int
		bound    bounds
		logitAbs float64 // see agreementCase
	}{
		{"phi3-F32-kv2", models.F32, 2, phi3F32Bounds, 0},
		{"phi3-F16", models.F16, 4, phi3F16Bounds, 0.0034},     // measured 0.00255
		{"phi3-Q8_0-kv2", models.Q8_0, 2, phi3Q8Bounds, 0.090}, // measured 0.0685
	} {
		t.Run(c.name, func(t *testing.T) {
			runAgreement(t, agreementCase{
				path:     writePhi3Model(t, dir, c.name, c.typ, c.nKV),
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}

// TestCaptureIdentitiesPhi3 checks the residual identity of a model
// without a resid_mid hook: resid_post = (resid_pre + attn_out) + mlp_out,
// the float32 additions of llama.cpp's phi3 graph in its order, and
// resid_pre[L+1] = resid_post[L].
func TestCaptureIdentitiesPhi3(t *testing.T) {
	m, err := LoadModel(writePhi3Model(t, t.TempDir(), "phi3", models.Q8_0, 2), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Hooks.Has(models.ResidMid) {
		t.Fatal("phi3 has a resid_mid hook")
	}
	ids, err := m.Tokenize("Once upon a time, there was a little girl named Lily.", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := m.NLayer()
	hooks := slices.DeleteFunc(allHooks(n), func(h models.Hook) bool { return h.Kind == models.ResidMid })
	c := runOne(t, m, ContextParams{}, [][]int32{ids}, hooks)[0]
	for l := range n {
		pre := get(t, c, models.Hook{Kind: models.ResidPre, Layer: l})
		attn := get(t, c, models.Hook{Kind: models.AttnOut, Layer: l})
		mlp := get(t, c, models.Hook{Kind: models.MLPOut, Layer: l})
		post := get(t, c, models.Hook{Kind: models.ResidPost, Layer: l})
		if post.Rows() != len(ids) || attn.Rows() != len(ids) {
			t.Fatalf("layer %d: %d and %d rows, want %d (every position, last layer included)", l, attn.Rows(), post.Rows(), len(ids))
		}
		for i := range post.Data {
			if want := (pre.Data[i] + attn.Data[i]) + mlp.Data[i]; post.Data[i] != want {
				t.Fatalf("layer %d: resid_post[%d] = %g, (resid_pre + attn_out) + mlp_out = %g", l, i, post.Data[i], want)
			}
		}
		if maxRelDiff(attn, pre) < 0.01 || rowNorm(mlp.Row(0)) == 0 {
			t.Errorf("layer %d: attn_out or mlp_out looks wrong", l)
		}
	}
}
