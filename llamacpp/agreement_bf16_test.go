package llamacpp

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestAgreementBF16 runs the agreement test on a BF16 model: the
// mistral-tiny llama model written in F32, then every matrix rounded to
// BF16 (to nearest, ties to even, as ggml's fp32→bf16 conversion), norm
// weights left F32 as converters leave them. The reference decodes BF16
// with models.Dequantize (bit-exact with ggml's to_float, see
// dequant_ggml_test.go). ggml's CPU backend rounds each matrix product's
// input activations to BF16 (8 significant bits: a relative rounding of up
// to 2^-9, eight times F16's), so the bounds are wider than F16's: 1.3
// times the worst measured here, rounded up to two digits.
func TestAgreementBF16(t *testing.T) {
	dir := t.TempDir()
	spec, err := models.SynthPreset("mistral-tiny")
	if err != nil {
		t.Fatal(err)
	}
	spec.Seed, spec.VocabPath = 31, testmodels.Path(t, models.SynthVocab("llama"))
	f32 := filepath.Join(dir, "f32.gguf")
	if err := models.WriteSynthetic(f32, spec); err != nil {
		t.Fatal(err)
	}
	f, err := models.Open(f32)
	if err != nil {
		t.Fatal(err)
	}
	w := &models.Writer{}
	for _, kv := range f.KVs {
		v := kv.Value
		if kv.Key == "general.file_type" {
			v = uint32(32) // LLAMA_FTYPE_MOSTLY_BF16
		}
		if err := w.AddKV(kv.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	bf16 := 0
	for _, ti := range f.Tensors {
		b, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		typ := ti.Type
		if len(ti.Dims) == 2 {
			out := make([]byte, len(b)/2)
			for i := range len(b) / 4 {
				u := binary.LittleEndian.Uint32(b[4*i:])
				if math.IsNaN(float64(math.Float32frombits(u))) {
					t.Fatalf("%s holds a NaN", ti.Name)
				}
				u += 0x7fff + (u>>16)&1
				binary.LittleEndian.PutUint16(out[2*i:], uint16(u>>16))
			}
			b, typ = out, models.BF16
			bf16++
		}
		if err := w.AddTensor(ti.Name, typ, ti.Dims, b); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "bf16.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if bf16 != 2+2*7 {
		t.Fatalf("%d BF16 matrices, want token_embd, output and 7 per layer", bf16)
	}
	runAgreement(t, agreementCase{path: path, prompts: []prompt{promptFirst, promptSentence, prompt40}, bound: bf16Bounds,
		logitAbs: 0.027}) // measured 0.0206
}

// bf16Bounds are for BF16 weights: about five times F16's (8 significant
// bits against 11), a third of Q8_0's.
var bf16Bounds = bounds{
	models.ResidPre:  0.0040, // measured 0.00305
	models.Z:         0.0065, // measured 0.00496
	models.AttnOut:   0.0082, // measured 0.00628
	models.ResidMid:  0.0041, // measured 0.00308
	models.MLPOut:    0.0099, // measured 0.00757
	models.ResidPost: 0.0049, // measured 0.00373
	models.LnFinal:   0.0049, // measured 0.00375
	models.Logits:    0.0060, // measured 0.00454
}
