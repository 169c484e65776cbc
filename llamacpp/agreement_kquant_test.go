package llamacpp

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The test in this file runs Q4_K_M models, the quantization most
// researchers download, through llama.cpp and checks every hook against
// models/reference running the same weights as decoded by lldiff's own
// K-quant decoder, models.Dequantize. The reference reads F32, F16, Q8_0
// and Q4_0 with decoders of its own, and other types through
// models.Dequantize; the test hands it an F32 copy of the Q4_K_M file
// whose every tensor is models.Dequantize's decoding of the stored one: a
// misread scale, min or high bit anywhere in a Q4_K or Q6_K block (or in
// the Q5_0 and Q8_0 that llama.cpp falls back to for rows that are not
// whole super-blocks) changes the weights the reference multiplies, and
// the hooks after it by far more than the bounds.
//
// ggml's CPU matrix products quantize their input activations to Q8_K
// (8-bit codes with one float32 scale per 256 values) for Q4_K and Q6_K
// weights, and to Q8_0 for Q5_0 and Q8_0 weights; the reference multiplies
// float32 activations. That rounding is what the bounds allow for, as in
// q4Bounds; each is 1.3 times the worst measured value over all layers,
// positions and prompts of both models, rounded up to two digits.

// kquantBounds are for the Q4_K_M models below (1, 18 and 40 tokens),
// about the size of q8Bounds and q4Bounds: Q8_K rounds activations as
// finely as Q8_0 does. A decoder that ignores the high bits of the Q4_K
// scales of one matrix gives errors of 0.42 to 1.3 (see
// TestAgreementKQuantDetectsMisreadScales).
var kquantBounds = bounds{
	models.ResidPre:  0.024, // measured 0.0179
	models.Z:         0.030, // measured 0.0228
	models.AttnOut:   0.031, // measured 0.0234
	models.ResidMid:  0.025, // measured 0.0188
	models.MLPOut:    0.043, // measured 0.0324
	models.ResidPost: 0.027, // measured 0.0206
	models.LnFinal:   0.027, // measured 0.0202
	models.Logits:    0.029, // measured 0.0217
}

// writeDecoded writes to dst an F32 copy of the GGUF file f: the same
// metadata (general.file_type set to F32) and tensors, each decoded by
// models.Dequantize. When mangle has an entry for a tensor, it changes the
// stored bytes first, to stand for a decoder that misreads them.
func writeDecoded(t *testing.T, f *models.File, dst string, mangle map[string]func(raw []byte)) {
	t.Helper()
	var w models.Writer
	for _, kv := range f.KVs {
		v := kv.Value
		if kv.Key == "general.file_type" {
			v = uint32(0) // LLAMA_FTYPE_ALL_F32
		}
		if err := w.AddKV(kv.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		raw, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if m := mangle[ti.Name]; m != nil {
			m(raw)
		}
		v := make([]float32, ti.NumElements())
		if err := models.Dequantize(v, raw, ti.Type); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(x))
		}
		if err := w.AddTensor(ti.Name, models.F32, ti.Dims, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
}

// tensorTypes returns, for each type in f, the names of its tensors.
func tensorTypes(f *models.File) map[models.GGMLType][]string {
	out := map[models.GGMLType][]string{}
	for _, ti := range f.Tensors {
		out[ti.Type] = append(out[ti.Type], ti.Name)
	}
	return out
}

// TestAgreementKQuant quantizes two synthetic F16 llama models to Q4_K_M
// with llama.cpp's quantizer (its mixture, not pure):
//
//   - 2 layers, d_model 256, 4 query heads over 2 key/value heads, d_ff
//     512, untied: token_embd and most matrices Q4_K; output, and the
//     attn_v and ffn_down of layer 1 (llama.cpp's "more bits" layers) Q6_K.
//   - the "small" preset, 4 layers, d_model 256, 8 query heads over 4, d_ff
//     704, tied: token_embd, the unembedding too, Q6_K; ffn_down's
//     704-wide rows are not whole super-blocks, and fall back to Q5_0
//     (Q8_0 in the "more bits" layers).
//
// llama.cpp runs the Q4_K_M file, the reference its decoding by
// models.Dequantize.
func TestAgreementKQuant(t *testing.T) {
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	dir := t.TempDir()
	small, err := models.SynthPreset("small")
	if err != nil {
		t.Fatal(err)
	}
	small.Type, small.Seed, small.VocabPath = models.F16, 11, vocab
	worst := map[models.Kind]float64{}
	for _, tc := range []struct {
		name      string
		spec      models.SynthSpec
		wantTypes []models.GGMLType
		logitAbs  float64
	}{
		{"untied-gqa2", models.SynthSpec{NLayer: 2, DModel: 256, NHead: 4, NHeadKV: 2, DFF: 512, NCtx: 256, Type: models.F16, Untied: true, Seed: 5, VocabPath: vocab},
			[]models.GGMLType{models.Q4_K, models.Q6_K}, 0.12}, // measured 0.0894
		// The tied model's logits are larger (token_embd.weight has σ 1,
		// output.weight σ 1/sqrt(d_model)), and so are their errors.
		{"small-tied", small, []models.GGMLType{models.Q4_K, models.Q6_K, models.Q5_0, models.Q8_0}, 2.0}, // measured 1.54
	} {
		t.Run(tc.name, func(t *testing.T) {
			f16 := filepath.Join(dir, tc.name+"-f16.gguf")
			q := filepath.Join(dir, tc.name+"-q4_k_m.gguf")
			decoded := filepath.Join(dir, tc.name+"-decoded-f32.gguf")
			if err := models.WriteSynthetic(f16, tc.spec); err != nil {
				t.Fatal(err)
			}
			if err := Quantize(f16, q, QuantizeParams{Type: "Q4_K_M", Threads: 2}); err != nil {
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
					desc = append(desc, fmt.Sprintf("%s: %d", typ, len(names)))
				}
			}
			t.Logf("tensor types: %s; Q6_K: %s", strings.Join(desc, ", "), strings.Join(types[models.Q6_K], ", "))
			for _, typ := range tc.wantTypes {
				if types[typ] == nil {
					t.Fatalf("the Q4_K_M file has no %s tensor (types: %s)", typ, strings.Join(desc, ", "))
				}
			}
			writeDecoded(t, f, decoded, nil)
			directMatchesDecoded(t, q, decoded)

			m, ref := loadWithReference(t, q, decoded)
			logitAbs, nearTies := 0.0, 0
			for _, p := range []prompt{promptBOS, promptSentence, prompt40} {
				tokens := p.tokens(t, m)
				t.Run(fmt.Sprintf("%s-%dtok", p.name, len(tokens)), func(t *testing.T) {
					for _, d := range compareRun(t, m, ref, tokens) {
						worst[d.hook.Kind] = max(worst[d.hook.Kind], d.worst())
						if err := reference.Compare(d.hook.Name(), d.got, d.want, kquantBounds[d.hook.Kind]); err != nil {
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
			t.Logf("largest absolute logit error %.4g (bound %.2g); %d argmax near-ties", logitAbs, tc.logitAbs, nearTies)
		})
	}
	var b strings.Builder
	for _, k := range allKinds {
		fmt.Fprintf(&b, "\n\t%-10s %.4g (bound %.2g)", k, worst[k], kquantBounds[k])
	}
	t.Logf("worst relative L2 per hook kind, both models:%s", b.String())
}

// TestAgreementKQuantDetectsMisreadScales shows that the bounds above catch
// a plausible decoder bug: ignoring the high two bits of the 6-bit scales
// and mins of sub-blocks 4-7 of a Q4_K block (kept in the top bits of
// scale bytes 0-7), here in blk.0.ffn_gate.weight only. Every hook
// computed before that matrix is used must still agree, and
// blocks.0.hook_mlp_out, where it is, must not.
func TestAgreementKQuantDetectsMisreadScales(t *testing.T) {
	dir := t.TempDir()
	spec := models.SynthSpec{NLayer: 2, DModel: 256, NHead: 4, NHeadKV: 2, DFF: 512, NCtx: 256, Type: models.F16, Untied: true, Seed: 5,
		VocabPath: testmodels.Path(t, testmodels.VocabLlamaSPM)}
	f16, q, decoded := filepath.Join(dir, "f16.gguf"), filepath.Join(dir, "q4_k_m.gguf"), filepath.Join(dir, "misread-f32.gguf")
	if err := models.WriteSynthetic(f16, spec); err != nil {
		t.Fatal(err)
	}
	if err := Quantize(f16, q, QuantizeParams{Type: "Q4_K_M", Threads: 2}); err != nil {
		t.Fatal(err)
	}
	f, err := models.Open(q)
	if err != nil {
		t.Fatal(err)
	}
	const name = "blk.0.ffn_gate.weight"
	if ti, ok := f.Tensor(name); !ok || ti.Type != models.Q4_K {
		t.Fatalf("the Q4_K_M file has no Q4_K %s", name)
	}
	changed := 0
	writeDecoded(t, f, decoded, map[string]func([]byte){name: func(raw []byte) {
		for b := 0; b < len(raw); b += 144 { // block: d, dmin, scales[12], qs[128]
			for i := 4; i < 12; i++ {
				if raw[b+i]&0xc0 != 0 {
					changed++
				}
				raw[b+i] &^= 0xc0
			}
		}
	}})
	t.Logf("%s: %d scale bytes lost high bits", name, changed)

	m, ref := loadWithReference(t, q, decoded)
	firstBad := models.Hook{Kind: models.MLPOut, Layer: 0}
	before := true
	for _, d := range compareRun(t, m, ref, prompt40.tokens(t, m)) {
		before = before && d.hook != firstBad
		err := reference.Compare(d.hook.Name(), d.got, d.want, kquantBounds[d.hook.Kind])
		switch {
		case before && err != nil:
			t.Errorf("%s is computed before %s is used, yet: %v", d.hook.Name(), name, err)
		case (d.hook == firstBad || d.hook.Kind == models.Logits) && err == nil:
			t.Errorf("%s agrees with the reference (worst relative L2 %.3g, bound %.2g) although the reference misread %s",
				d.hook.Name(), d.worst(), kquantBounds[d.hook.Kind], name)
		case !before:
			t.Logf("%-26s worst relative L2 %.3g (bound %.2g)", d.hook.Name(), d.worst(), kquantBounds[d.hook.Kind])
		}
	}
}

// directMatchesDecoded: the reference loads the Q4_K_M file itself (its
// K-quant tensors through models.Dequantize) and computes exactly what it
// computes from the F32 copy, bit for bit: same weights, same code.
func directMatchesDecoded(t *testing.T, quant, decoded string) {
	t.Helper()
	direct, err := reference.Load(quant)
	if err != nil {
		t.Fatalf("the reference cannot load the Q4_K_M file directly: %v", err)
	}
	viaF32, err := reference.Load(decoded)
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int32{1, 450, 4996, 17354, 1701}
	a, err := direct.Run(tokens)
	if err != nil {
		t.Fatal(err)
	}
	b, err := viaF32.Run(tokens)
	if err != nil {
		t.Fatal(err)
	}
	names := a.Names()
	if len(names) == 0 || !slices.Equal(names, b.Names()) {
		t.Fatalf("hooks %v vs %v", names, b.Names())
	}
	for _, n := range names {
		x, _ := a.Get(n)
		y, _ := b.Get(n)
		for i := range x {
			if !slices.Equal(x[i], y[i]) {
				t.Fatalf("%s position %d: the reference on the Q4_K_M file differs from the reference on its F32 decoding", n, i)
			}
		}
	}
}
