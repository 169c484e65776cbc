package llamacpp

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// TestAgreementKQuantMixtures extends TestAgreementKQuant to three more of
// llama.cpp's K-quant mixtures, on its "untied-gqa2" model: Q5_K_M, Q6_K
// and Q2_K. Each file is run by llama.cpp and, decoded by
// models.Dequantize, by the reference; their Q5_K, Q3_K and Q2_K blocks
// are thus checked as Q4_K and Q6_K are there. Both sides multiply the
// same decoded weights; what differs is that ggml rounds activations to
// Q8_K before each K-quant product, so the errors come out about the size
// of kquantBounds' for every mixture (2-bit weights included). The bounds
// are still per mixture: each is about 1.3 times the worst value measured
// over all layers, positions and the three prompts, rounded up to two
// digits. The three files take about 13 s in all, so the test also runs
// under -short.
func TestAgreementKQuantMixtures(t *testing.T) {
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	spec := models.SynthSpec{NLayer: 2, DModel: 256, NHead: 4, NHeadKV: 2, DFF: 512, NCtx: 256, Type: models.F16, Untied: true, Seed: 5, VocabPath: vocab}
	dir := t.TempDir()
	f16 := filepath.Join(dir, "f16.gguf")
	if err := models.WriteSynthetic(f16, spec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mix       string
		wantTypes []models.GGMLType // exactly the types in the file
		bounds    bounds
		logitAbs  float64
	}{
		// Q5_K_M: Q5_K, with Q6_K for output and layer 1's attn_v and
		// ffn_down, as in Q4_K_M.
		{"Q5_K_M", []models.GGMLType{models.F32, models.Q5_K, models.Q6_K}, bounds{
			models.ResidPre:  0.019, // measured 0.0145
			models.Z:         0.034, // measured 0.0260
			models.AttnOut:   0.039, // measured 0.0296
			models.ResidMid:  0.022, // measured 0.0162
			models.MLPOut:    0.042, // measured 0.0323
			models.ResidPost: 0.026, // measured 0.0198
			models.LnFinal:   0.026, // measured 0.0196
			models.Logits:    0.027, // measured 0.0205
		}, 0.13}, // measured 0.0940
		// Q6_K: every matrix Q6_K.
		{"Q6_K", []models.GGMLType{models.F32, models.Q6_K}, bounds{
			models.ResidPre:  0.019, // measured 0.0143
			models.Z:         0.030, // measured 0.0225
			models.AttnOut:   0.033, // measured 0.0253
			models.ResidMid:  0.022, // measured 0.0163
			models.MLPOut:    0.038, // measured 0.0285
			models.ResidPost: 0.025, // measured 0.0188
			models.LnFinal:   0.025, // measured 0.0187
			models.Logits:    0.026, // measured 0.0194
		}, 0.12}, // measured 0.0872
		// Q2_K: token_embd, attn_q, attn_k, ffn_gate and ffn_up Q2_K;
		// attn_v, attn_output and ffn_down Q3_K (no Q4_K here); output
		// Q6_K.
		{"Q2_K", []models.GGMLType{models.F32, models.Q2_K, models.Q3_K, models.Q6_K}, bounds{
			models.ResidPre:  0.019, // measured 0.0145
			models.Z:         0.028, // measured 0.0214
			models.AttnOut:   0.032, // measured 0.0240
			models.ResidMid:  0.020, // measured 0.0147
			models.MLPOut:    0.043, // measured 0.0327
			models.ResidPost: 0.024, // measured 0.0183
			models.LnFinal:   0.024, // measured 0.0183
			models.Logits:    0.027, // measured 0.0204
		}, 0.13}, // measured 0.0933
	} {
		t.Run(tc.mix, func(t *testing.T) {
			q := filepath.Join(dir, strings.ToLower(tc.mix)+".gguf")
			decoded := filepath.Join(dir, strings.ToLower(tc.mix)+"-decoded-f32.gguf")
			if err := Quantize(f16, q, QuantizeParams{Type: tc.mix, Threads: 2}); err != nil {
				t.Fatal(err)
			}
			f, err := models.Open(q)
			if err != nil {
				t.Fatal(err)
			}
			types := tensorTypes(f)
			var desc []string
			for _, typ := range models.GGMLTypes() {
				if names := types[typ]; names != nil {
					desc = append(desc, fmt.Sprintf("%s: %s", typ, strings.Join(names, " ")))
				}
			}
			t.Logf("tensor types:\n\t%s", strings.Join(desc, "\n\t"))
			for _, typ := range tc.wantTypes {
				if types[typ] == nil {
					t.Errorf("the %s file has no %s tensor", tc.mix, typ)
				}
			}
			for typ := range types {
				if !slices.Contains(tc.wantTypes, typ) {
					t.Errorf("the %s file has %s tensors, which the test does not expect", tc.mix, typ)
				}
			}
			writeDecoded(t, f, decoded, nil)
			directMatchesDecoded(t, q, decoded)

			m, ref := loadWithReference(t, q, decoded)
			worst := map[models.Kind]float64{}
			logitAbs, nearTies := 0.0, 0
			for _, p := range []prompt{promptBOS, promptSentence, prompt40} {
				tokens := p.tokens(t, m)
				t.Run(fmt.Sprintf("%s-%dtok", p.name, len(tokens)), func(t *testing.T) {
					for _, d := range compareRun(t, m, ref, tokens) {
						worst[d.hook.Kind] = max(worst[d.hook.Kind], d.worst())
						if err := reference.Compare(d.hook.Name(), d.got, d.want, tc.bounds[d.hook.Kind]); err != nil {
							t.Error(err)
						}
						if d.hook.Kind != models.Logits {
							continue
						}
						e := d.maxAbs()
						logitAbs = max(logitAbs, e)
						if e > tc.logitAbs {
							t.Errorf("logits: largest absolute error %.3g, bound %.3g", e, tc.logitAbs)
						}
						nearTies += checkArgmax(t, d, true)
					}
				})
			}
			var b strings.Builder
			for _, k := range allKinds {
				fmt.Fprintf(&b, "\n\t%-10s %.4g (bound %.2g)", k, worst[k], tc.bounds[k])
			}
			t.Logf("%s: worst relative L2 per hook kind:%s\n\tlargest absolute logit error %.4g (bound %.2g); %d argmax near-ties",
				tc.mix, b.String(), logitAbs, tc.logitAbs, nearTies)
		})
	}
}
