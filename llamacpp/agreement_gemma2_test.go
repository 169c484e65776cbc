package llamacpp

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The tests in this file are the agreement tests of agreement_test.go for
// gemma2 (Gemma 2, llama.cpp's src/models/gemma2-iswa.cpp) on small
// synthetic models: 2 layers, d_model 64 in 4 heads of 32 (2 kv heads),
// d_ff 128, Llama 2's vocabulary standing in for Gemma's. Layer 0 attends
// within a sliding window of 8 positions, so the 16- and 40-token prompts
// reach past it. The soft-caps are small (attention 2, logits 5) so that
// both bend their inputs strongly: attention scores of order 1 and logits
// of order 8 (tied, token_embd σ 1) are far from the linear part of tanh,
// and a forgotten or misplaced cap moves them by order 1.
//
// Bounds are 1.3 times the worst relative L2 error measured over the
// cases below and the three prompts, rounded up to two digits. The
// post-norms renormalize attn_out and mlp_out, so their relative errors
// are those of the products before them; GELU is ggml's table (see
// geluGGML in package reference), computed alike on both sides.

// gemma2F32Bounds are for F32 weights and an F32 KV cache: llama's 1e-4,
// except mlp_out. Measured here (AVX2) at most 2.64e-5, in mlp_out (z
// 4.38e-7, attn_out 4.46e-7, resid_post 3.45e-6, logits 4.10e-6): ggml's
// GELU rounds its input to half precision, and an input that differs from
// the reference's in its last float32 bit can round to the neighbouring
// half, a step of about 1e-3 relative in that element, which the post-MLP
// norm passes on whole; the later hooks carry it, diluted by the residual
// stream.
var gemma2F32Bounds = withMLPOut(exactBounds, gemmaF32MLPBound)

// gemmaF32MLPBound bounds mlp_out of an F32 Gemma: one or two flipped
// GELU inputs at a position (measured at most 2.92e-4 on gemma3, 2.64e-5
// on gemma2), times 1.3.
const gemmaF32MLPBound = 3.8e-4

// withMLPOut returns b with the bound of mlp_out replaced.
func withMLPOut(b bounds, mlp float64) bounds {
	out := bounds{}
	for k, v := range b {
		out[k] = v
	}
	out[models.MLPOut] = mlp
	return out
}

// gemma2F16Bounds are for F16 weights. resid_pre and resid_mid are small:
// the scaled embedding (rms 8, exact on both sides) dominates them.
var gemma2F16Bounds = bounds{
	models.ResidPre:  1.3e-4, // measured 9.89e-5
	models.Z:         6.0e-4, // measured 4.55e-4
	models.AttnOut:   7.8e-4, // measured 5.95e-4
	models.ResidMid:  1.6e-4, // measured 1.19e-4
	models.MLPOut:    1.1e-3, // measured 8.36e-4
	models.ResidPost: 2.0e-4, // measured 1.48e-4
	models.LnFinal:   1.9e-4, // measured 1.46e-4
	models.Logits:    4.4e-4, // measured 3.34e-4
}

// gemma2Q8Bounds are for Q8_0 weights.
var gemma2Q8Bounds = bounds{
	models.ResidPre:  0.0032, // measured 0.00243
	models.Z:         0.011,  // measured 0.00773
	models.AttnOut:   0.015,  // measured 0.0111
	models.ResidMid:  0.0039, // measured 0.00299
	models.MLPOut:    0.020,  // measured 0.0151
	models.ResidPost: 0.0044, // measured 0.00332
	models.LnFinal:   0.0044, // measured 0.00335
	models.Logits:    0.0089, // measured 0.0068
}

// writeGemma2Model writes the synthetic gemma2 model of the tests in this
// file, seed 19.
func writeGemma2Model(t *testing.T, dir, name string, typ models.GGMLType) string {
	t.Helper()
	spec := models.SynthSpec{
		Arch: "gemma2", NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 128,
		SlidingWindow: 8, AttnSoftcap: 2, FinalSoftcap: 5, Type: typ, Seed: 19,
		VocabPath: testmodels.Path(t, models.SynthVocab("gemma2")),
	}
	path := filepath.Join(dir, name+".gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgreementGemma2(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		typ      models.GGMLType
		bound    bounds
		logitAbs float64 // see agreementCase
	}{
		{"gemma2-F32", models.F32, gemma2F32Bounds, 0},
		{"gemma2-F16", models.F16, gemma2F16Bounds, 0.012}, // measured 0.00878
		{"gemma2-Q8_0", models.Q8_0, gemma2Q8Bounds, 0.26}, // measured 0.195
	} {
		t.Run(c.name, func(t *testing.T) {
			runAgreement(t, agreementCase{
				path:     writeGemma2Model(t, dir, c.name, c.typ),
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}

// TestCaptureIdentitiesGemma2 runs the residual identities on gemma2, where
// they hold only because attn_out and mlp_out are taken after the
// post-norms (TransformerLens's convention): the raw W_O z or MLP output
// would break them by order 1.
func TestCaptureIdentitiesGemma2(t *testing.T) {
	m, err := LoadModel(writeGemma2Model(t, t.TempDir(), "gemma2", models.Q8_0), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkCaptureIdentities(t, m, "Once upon a time, there was a little girl named Lily.")
}

// TestUnembedGemma2Softcap checks the logit lens on gemma2: in norm mode
// the lens of the last layer's resid_post is the model's own soft-capped
// logits (ggml both ways: F32 summation order), every lens logit lies
// within ±5, and the lens agrees with lens.Reference; in gamma mode, which
// is linear, there is no cap.
func TestUnembedGemma2Softcap(t *testing.T) {
	m, err := LoadModel(writeGemma2Model(t, t.TempDir(), "gemma2", models.F32), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	u, err := m.NewUnembedder(1)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if w := u.Weights(); w.FinalSoftcap != 5 || !w.Tied {
		t.Fatalf("weights %+v, want the final soft-cap 5 and tied", w)
	}
	ids := promptSentence.tokens(t, m)
	nl, nv := m.NLayer(), m.NVocab()
	c := runOne(t, m, ContextParams{Threads: 1, KVType: "f32"}, [][]int32{ids},
		[]models.Hook{{Kind: models.ResidPost, Layer: nl - 1}, {Kind: models.Logits, Layer: -1}})[0]
	last := get(t, c, models.Hook{Kind: models.ResidPost, Layer: nl - 1}).Data
	logits := get(t, c, models.Hook{Kind: models.Logits, Layer: -1}).Data
	got, err := u.Unembed(nil, last, len(ids), LensNorm)
	if err != nil {
		t.Fatal(err)
	}
	if e := lensRelErr(got, logits, nv); e > 1e-5 {
		t.Errorf("norm lens of the last resid_post vs the model's logits: rel %g > 1e-5", e)
	}
	big := 0.0
	for _, v := range got {
		big = math.Max(big, math.Abs(float64(v)))
	}
	if big > 5 || big < 4 {
		t.Errorf("largest |lens logit| %g, want just under the cap 5", big)
	}
	ref, err := lens.NewReference(m.File)
	if err != nil {
		t.Fatal(err)
	}
	if e := lensRelErr(got, ref.Unembed(nil, last, len(ids), lens.Norm), nv); e > 1e-5 {
		t.Errorf("norm lens vs lens.Reference: rel %g", e)
	}
	gamma, err := u.Unembed(nil, last, len(ids), LensGamma)
	if err != nil {
		t.Fatal(err)
	}
	big = 0
	for _, v := range gamma {
		big = math.Max(big, math.Abs(float64(v)))
	}
	if big <= 5 {
		t.Errorf("gamma lens: largest |logit| %g is within the cap; the linear modes must not cap", big)
	}
}

// TestAgreementGemma2DetectsSoftcaps shows that the comparison sees both
// soft-caps: llama.cpp runs the model with one cap raised to 1000 (next
// to no capping) while the reference runs the original. With the final
// cap changed every hook but the logits must agree; with the attention
// cap changed everything from z of layer 0 on must not.
func TestAgreementGemma2DetectsSoftcaps(t *testing.T) {
	dir := t.TempDir()
	orig := writeGemma2Model(t, dir, "gemma2", models.F32)
	f, err := models.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"gemma2.final_logit_softcapping", "gemma2.attn_logit_softcapping"} {
		t.Run(key, func(t *testing.T) {
			changed := filepath.Join(dir, key+".gguf")
			writeEditedKVs(t, f, changed, func(kvs []KV) []KV {
				for i := range kvs {
					if kvs[i].Key == key {
						kvs[i].Value = float32(1000)
					}
				}
				return kvs
			})
			m, ref := loadWithReference(t, changed, orig)
			attn := key == "gemma2.attn_logit_softcapping"
			for _, d := range compareRun(t, m, ref, promptSentence.tokens(t, m)) {
				err := reference.Compare(d.hook.Name(), d.got, d.want, gemma2F32Bounds[d.hook.Kind])
				affected := d.hook.Kind == models.Logits || attn && (d.hook.Layer >= 0 && d.hook.Kind != models.ResidPre || d.hook.Layer > 0 || d.hook.Kind == models.LnFinal)
				switch {
				case affected && err == nil:
					t.Errorf("%s agrees with the reference (worst %.3g) although llama.cpp ran %s = 1000", d.hook.Name(), d.worst(), key)
				case !affected && err != nil:
					t.Errorf("%s does not depend on %s, yet: %v", d.hook.Name(), key, err)
				}
			}
		})
	}
}
