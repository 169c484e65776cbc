package llamacpp

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
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
// file sets it). TestAgreementGemma3RopeScaling runs the model with Gemma
// 3 4B's linear RoPE scaling (factor 8, in the global layer only).
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
	models.ResidMid:  0.0076, // measured 0.00579 (linear RoPE scaling 8; unscaled 0.00575)
	models.MLPOut:    0.026,  // measured 0.0197
	models.ResidPost: 0.0083, // measured 0.00636
	models.LnFinal:   0.0083, // measured 0.00634
	models.Logits:    0.011,  // measured 0.00827
}

// writeGemma3Model writes the synthetic gemma3 model of the tests in this
// file, seed 23.
func writeGemma3Model(t *testing.T, dir, name string, typ models.GGMLType, untied bool, finalCap float64) string {
	t.Helper()
	return writeGemma3Spec(t, dir, name, gemma3Spec(t, typ, untied, finalCap))
}

// gemma3Spec is the synthetic gemma3 model of the tests in this file.
func gemma3Spec(t *testing.T, typ models.GGMLType, untied bool, finalCap float64) models.SynthSpec {
	return models.SynthSpec{
		Arch: "gemma3", NLayer: 6, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 128,
		SlidingWindow: 8, FinalSoftcap: finalCap, Type: typ, Untied: untied, Seed: 23,
		VocabPath: testmodels.Path(t, models.SynthVocab("gemma3")),
	}
}

// writeGemma3Spec writes spec to dir/name.gguf.
func writeGemma3Spec(t *testing.T, dir, name string, spec models.SynthSpec) string {
	t.Helper()
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

// Gemma 3 4B, 12B and 27B carry linear RoPE scaling, factor 8
// (gemma3.rope.scaling.type "linear", gemma3.rope.scaling.factor 8), which
// llama.cpp applies to the global layers only: load_hparams for
// LLM_ARCH_GEMMA3 sets rope_freq_scale_train_swa = 1 (and base 10000), and
// llama_model::get_rope_freq_scale gives the sliding-window layers that,
// the global ones cparams.rope_freq_scale = 1/8. The model below is this
// file's with factor 8: at position p the global layer turns pair i by
// p/8 · 1e6^(-2i/32) instead of p · 1e6^(-2i/32), pair 0 by 0.875 rad
// less from position 1 on.
//
// Measured (AVX2; first, sentence and 40-token prompts), factor 8:
//   - F32: mlp_out 2.92e-4 (the flipped GELU inputs of the unscaled
//     model, under gemmaF32MLPBound), every other hook at most 4.23e-5
//     (attn_out; resid_pre 3.89e-5, z 3.84e-5, resid_mid 3.83e-5,
//     resid_post 3.89e-5, ln_final 3.76e-5, logits 3.75e-5), largest
//     absolute logit error 0.00129: gemma3F32Bounds;
//   - Q8_0: resid_pre 0.00548, z 0.0124, attn_out 0.0148, resid_mid
//     0.00579, mlp_out 0.0197, resid_post 0.00591, ln_final 0.00580,
//     logits 0.00792, largest absolute logit error 0.296, no argmax
//     near-ties: gemma3Q8Bounds.
func TestAgreementGemma3RopeScaling(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name     string
		typ      models.GGMLType
		bound    bounds
		logitAbs float64
	}{
		{"gemma3-linear8-F32", models.F32, gemma3F32Bounds, 0},
		{"gemma3-linear8-Q8_0", models.Q8_0, gemma3Q8Bounds, 0.39}, // measured 0.296
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := gemma3Spec(t, c.typ, false, 0)
			spec.RopeScaleLinear = 8
			runAgreement(t, agreementCase{
				path:     writeGemma3Spec(t, dir, c.name, spec),
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}

// promptWindow is as long as the sliding window of this file's models: no
// position reaches past it.
var promptWindow = prompt{"story8", storyText, 8}

// TestAgreementGemma3DetectsWrongRopeScaling shows that the comparison
// sees where llama.cpp applies Gemma 3's linear RoPE scaling. llama.cpp
// runs the F32 model with factor 8 and rope base 10000 in the global layer
// as well (so that the global and sliding-window layers differ in their
// scaling only); the reference runs a copy whose metadata is changed:
//   - "ignored": no rope.scaling keys, the reference that ignores the
//     factor. Layers 0 to 4 (sliding window, never scaled) must agree;
//     z of layer 5, the global layer, must not (except at position 0,
//     where every angle is 0), nor the logits.
//   - "inverted": factor 1/8, the reference that multiplies the angles by
//     the factor instead of dividing: the same.
//   - "swa-scaled": no sliding window, so that every layer is global and
//     scaled (llama.cpp's non-iswa graph, and the reference's), the
//     reference that scales the sliding-window layers too; on the 8-token
//     prompt, which the window of 8 does not cut, that is its only
//     difference. z of layer 0 must not agree (except at position 0), nor
//     the logits; resid_pre of layer 0, an embedding row, must.
//
// Measured, z of the first layer the change reaches (bound 1e-4): ignored
// worst 0.712 (position 1: 0.193), inverted 0.895 (0.385), swa-scaled
// 0.765 (0.0894).
func TestAgreementGemma3DetectsWrongRopeScaling(t *testing.T) {
	dir := t.TempDir()
	spec := gemma3Spec(t, models.F32, false, 0)
	spec.RopeBase, spec.RopeScaleLinear = 10000, 8
	path := writeGemma3Spec(t, dir, "gemma3-base1e4-linear8", spec)
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(path, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		name  string
		edit  func(kvs []KV) []KV
		p     prompt
		layer int // the first layer whose z must disagree
	}{
		{"ignored", func(kvs []KV) []KV {
			return deleteKV(deleteKV(kvs, "gemma3.rope.scaling.type"), "gemma3.rope.scaling.factor")
		}, prompt40, 5},
		{"inverted", func(kvs []KV) []KV { return setKV(kvs, "gemma3.rope.scaling.factor", float32(0.125)) }, prompt40, 5},
		{"swa-scaled", func(kvs []KV) []KV { return deleteKV(kvs, "gemma3.attention.sliding_window") }, promptWindow, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := filepath.Join(dir, tc.name+".gguf")
			writeEditedKVs(t, f, changed, tc.edit)
			ref, err := reference.Load(changed)
			if err != nil {
				t.Fatal(err)
			}
			firstBad := models.Hook{Kind: models.Z, Layer: tc.layer}
			before := true
			for _, d := range compareRun(t, m, ref, tc.p.tokens(t, m)) {
				before = before && d.hook != firstBad
				err := reference.Compare(d.hook.Name(), d.got, d.want, gemma3F32Bounds[d.hook.Kind])
				switch {
				case before && err != nil:
					t.Errorf("%s is computed before the first layer the change reaches, yet: %v", d.hook.Name(), err)
				case (d.hook == firstBad || d.hook.Kind == models.Logits) && err == nil:
					t.Errorf("%s agrees with a %s reference (worst relative L2 %.3g), although llama.cpp scales the global layer only", d.hook.Name(), tc.name, d.worst())
				}
				if d.hook != firstBad {
					continue
				}
				if e := reference.RelL2(d.got[0], d.want[0]); e > gemma3F32Bounds[models.Z] {
					t.Errorf("%s at position 0, where every angle is 0: relative L2 %.3g", d.hook.Name(), e)
				}
				t.Logf("%s: worst relative L2 %.3g (bound %.2g); at position 1 %.3g", d.hook.Name(), d.worst(),
					gemma3F32Bounds[models.Z], reference.RelL2(d.got[1], d.want[1]))
			}
		})
	}
}

// writeEditedKVs writes to dst a copy of f whose metadata is edit(f.KVs).
func writeEditedKVs(t *testing.T, f *models.File, dst string, edit func(kvs []KV) []KV) {
	t.Helper()
	w := writerWith(t, f, edit(slices.Clone(f.KVs)))
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
}
