package llamacpp

import (
	"fmt"
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
// 4.17e-7, resid_mid 1.94e-7, logits 3.16e-7).
var phi3F32Bounds = exactBounds

// phi3F16Bounds are for F16 weights.
var phi3F16Bounds = bounds{
	models.ResidPre:  4.9e-4, // measured 3.73e-4
	models.Z:         7.5e-4, // measured 5.75e-4
	models.AttnOut:   8.8e-4, // measured 6.72e-4
	models.ResidMid:  7.0e-4, // measured 5.37e-4
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
	models.ResidMid:  0.016, // measured 0.0119
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

// TestCaptureIdentitiesPhi3 checks the residual identities with phi3's
// resid_mid, the unnamed ADD lldiff finds by a source's source:
// resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out
// (+ the control vector, when one is loaded), exactly in float32 (the
// additions of llama.cpp's phi3 graph), at every position of every layer,
// the last layer (where llama.cpp adds GET_ROWS selections of both)
// included, and resid_pre[L+1] = resid_post[L]. A control vector on the
// last layer makes the add of mlp_out to resid_mid unnamed as well: the
// capture must still find resid_mid alone (a second match would double its
// rows or break the identities).
func TestCaptureIdentitiesPhi3(t *testing.T) {
	m, err := LoadModel(writePhi3Model(t, t.TempDir(), "phi3", models.Q8_0, 2), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Hooks.Has(models.ResidMid) {
		t.Fatal("phi3 has no resid_mid hook")
	}
	ids, err := m.Tokenize("Once upon a time, there was a little girl named Lily.", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := m.NLayer()
	cvec := make([][]float32, n)
	cvec[n-1] = randomDir(5, m.NEmbd(), 4)
	for _, withCvec := range []bool{false, true} {
		t.Run(fmt.Sprintf("cvec=%v", withCvec), func(t *testing.T) {
			ctx, err := m.NewContext(ContextParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer ctx.Close()
			if withCvec {
				if err := ctx.SetControlVector(cvec); err != nil {
					t.Fatal(err)
				}
			}
			caches, err := ctx.Run([][]int32{ids}, RunOptions{Hooks: allHooks(n)})
			if err != nil {
				t.Fatal(err)
			}
			checkPhi3Identities(t, caches[0], n, len(ids), cvec, withCvec)
		})
	}
}

func checkPhi3Identities(t *testing.T, c *models.Cache, n, nTok int, cvec [][]float32, withCvec bool) {
	t.Helper()
	for l := range n {
		pre := get(t, c, models.Hook{Kind: models.ResidPre, Layer: l})
		attn := get(t, c, models.Hook{Kind: models.AttnOut, Layer: l})
		mid := get(t, c, models.Hook{Kind: models.ResidMid, Layer: l})
		mlp := get(t, c, models.Hook{Kind: models.MLPOut, Layer: l})
		post := get(t, c, models.Hook{Kind: models.ResidPost, Layer: l})
		if post.Rows() != nTok || attn.Rows() != nTok || mid.Rows() != nTok {
			t.Fatalf("layer %d: attn_out, resid_mid, resid_post have %d, %d, %d rows, want %d (every position, last layer included)",
				l, attn.Rows(), mid.Rows(), post.Rows(), nTok)
		}
		d := mid.Width
		for i := range post.Data {
			if want := pre.Data[i] + attn.Data[i]; mid.Data[i] != want {
				t.Fatalf("layer %d: resid_mid[%d] = %g, resid_pre + attn_out = %g", l, i, mid.Data[i], want)
			}
			want := mid.Data[i] + mlp.Data[i]
			if withCvec && cvec[l] != nil {
				want += cvec[l][i%d]
			}
			if post.Data[i] != want {
				t.Fatalf("layer %d: resid_post[%d] = %g, resid_mid + mlp_out (+ control vector) = %g", l, i, post.Data[i], want)
			}
		}
		if l+1 < n {
			next := get(t, c, models.Hook{Kind: models.ResidPre, Layer: l + 1})
			if !slices.Equal(next.Data, post.Data) {
				t.Errorf("layer %d: resid_pre[%d] != resid_post[%d]", l+1, l+1, l)
			}
		}
		if maxRelDiff(attn, pre) < 0.01 || rowNorm(mlp.Row(0)) == 0 {
			t.Errorf("layer %d: attn_out or mlp_out looks wrong", l)
		}
	}
}
