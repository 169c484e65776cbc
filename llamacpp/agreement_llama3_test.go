package llamacpp

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The tests in this file are the agreement tests of agreement_test.go for
// Llama 3.1 and 3.2's RoPE: llama with rope base 500000, grouped-query
// attention and rope_freqs.weight, the per-frequency factors by which
// llama.cpp divides each rotated pair's angle (ggml_rope_ext's
// freq_factors, in every layer). The synthetic models carry the factors
// llama.cpp's convert script computes for Llama 3.1's llama3 RoPE scaling
// (models.Llama3RopeFreqs): for heads of 16, pairs 0 to 3 have factor 1,
// pair 4 factor 2.69 and pairs 5 to 7 factor 8. The 200-token prompt turns
// pair 4 by up to 200·500000^(-1/2)·(1 - 1/2.69) = 0.18 rad less than
// plain RoPE would.

// promptLong is as long as the Llama 2 vocabulary tokenizes storyText
// (201 tokens).
var promptLong = prompt{"story200", storyText, 200}

// llama3Case is one synthetic Llama-3-style model.
type llama3Case struct {
	name     string
	typ      models.GGMLType
	bound    bounds
	logitAbs float64 // see agreementCase
}

// writeLlama3Model writes a synthetic llama model with Llama 3's RoPE: 3
// layers, d_model 128 in 8 heads of 16 that share 2 kv heads (4 query
// heads per kv head, as Llama 3 8B's 32 and 8), d_ff 256, 512 positions,
// rope base 500000, rope_freqs.weight, the Llama 2 vocabulary, seed 3.
func writeLlama3Model(t *testing.T, dir string, c llama3Case) string {
	t.Helper()
	spec := models.SynthSpec{
		NLayer: 3, DModel: 128, NHead: 8, NHeadKV: 2, DFF: 256, NCtx: 512,
		Type: c.typ, Untied: true, Seed: 3, Llama3Rope: true,
		VocabPath: testmodels.Path(t, testmodels.VocabLlamaSPM),
	}
	path := filepath.Join(dir, c.name+".gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

// Measured (AVX2, 1, 18, 40 and 200 tokens): F32 at most 6.24e-7 (attn_out;
// resid_pre 2.93e-7, z 5.63e-7, resid_mid 3.21e-7, mlp_out 5.57e-7,
// resid_post 3.63e-7, ln_final 3.69e-7, logits 3.79e-7; largest absolute
// logit error 1.73e-6), under exactBounds; Q8_0 under q8Bounds (measured
// on TinyStories-656K): resid_pre 0.0132, z 0.0136, attn_out 0.0148,
// resid_mid 0.0128, mlp_out 0.0240, resid_post 0.0152, ln_final 0.0150,
// logits 0.0160, with 8 argmax near-ties over the 259 positions (gaps
// 0.001 to 0.024).
var llama3Cases = []llama3Case{
	{name: "llama3-F32", typ: models.F32, bound: exactBounds},
	{name: "llama3-Q8_0", typ: models.Q8_0, bound: q8Bounds, logitAbs: 0.097}, // measured 0.0743
}

func TestAgreementLlama3Rope(t *testing.T) {
	dir := t.TempDir()
	for _, c := range llama3Cases {
		t.Run(c.name, func(t *testing.T) {
			runAgreement(t, agreementCase{
				path:     writeLlama3Model(t, dir, c),
				prompts:  []prompt{promptBOS, promptSentence, prompt40, promptLong},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
		})
	}
}

// writeRopeFreqs writes to dst a copy of the GGUF file f whose F32
// rope_freqs.weight holds freqs instead.
func writeRopeFreqs(t *testing.T, f *models.File, freqs []float32, dst string) {
	t.Helper()
	ti, ok := f.Tensor("rope_freqs.weight")
	if !ok || ti.Type != models.F32 || ti.NumElements() != uint64(len(freqs)) {
		t.Fatalf("%s has no F32 rope_freqs.weight of %d values", f.Path, len(freqs))
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	off := f.DataOffset + int64(ti.Offset)
	for i, v := range freqs {
		binary.LittleEndian.PutUint32(data[off+4*int64(i):], math.Float32bits(v))
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAgreementLlama3DetectsIgnoredRopeFreqs shows that the comparison sees
// the factors: llama.cpp runs the F32 model with Llama 3's factors, the
// reference a copy whose rope_freqs.weight is changed, which is the
// reference that ignores the factors (all 1) or one that gets one of them
// wrong (pair 4's 2.69 as 1). resid_pre of layer 0 is an embedding row
// and must agree; z of layer 0, the first hook that RoPE reaches, and the
// logits must not, and z must agree at position 0, where every angle is 0.
// Measured: z of layer 0 is beyond exactBounds from position 1 on, worst
// 0.0628 (all 1) and 0.0648 (pair 4), at position 40 0.0073 and 0.0060.
func TestAgreementLlama3DetectsIgnoredRopeFreqs(t *testing.T) {
	dir := t.TempDir()
	path := writeLlama3Model(t, dir, llama3Cases[0])
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	factors := models.Llama3RopeFreqs(500000, 16)
	ones := []float32{1, 1, 1, 1, 1, 1, 1, 1}
	pair4 := append([]float32(nil), factors...)
	pair4[4] = 1
	for _, tc := range []struct {
		name  string
		freqs []float32
	}{{"ignored", ones}, {"pair4", pair4}} {
		t.Run(tc.name, func(t *testing.T) {
			changed := filepath.Join(dir, tc.name+".gguf")
			writeRopeFreqs(t, f, tc.freqs, changed)
			m, err := LoadModel(path, ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			ref, err := reference.Load(changed)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range compareRun(t, m, ref, promptLong.tokens(t, m)) {
				err := reference.Compare(d.hook.Name(), d.got, d.want, exactBounds[d.hook.Kind])
				z0 := d.hook == models.Hook{Kind: models.Z, Layer: 0}
				switch {
				case d.hook == models.Hook{Kind: models.ResidPre, Layer: 0} && err != nil:
					t.Errorf("%s is an embedding row, yet: %v", d.hook.Name(), err)
				case (z0 || d.hook.Kind == models.Logits) && err == nil:
					t.Errorf("%s agrees with a reference with rope factors %v (worst relative L2 %.3g) although llama.cpp ran %v",
						d.hook.Name(), tc.freqs, d.worst(), factors)
				}
				if !z0 {
					continue
				}
				if e := reference.RelL2(d.got[0], d.want[0]); e > exactBounds[models.Z] {
					t.Errorf("%s at position 0, where every angle is 0: relative L2 %.3g", d.hook.Name(), e)
				}
				first := -1
				for p := range d.want {
					if reference.RelL2(d.got[p], d.want[p]) > exactBounds[models.Z] {
						first = p
						break
					}
				}
				t.Logf("%s: worst relative L2 %.3g; first position beyond the bound %d (position 40: %.3g)",
					d.hook.Name(), d.worst(), first, reference.RelL2(d.got[40], d.want[40]))
			}
		})
	}
}
