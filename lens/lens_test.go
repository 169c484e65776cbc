package lens

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
	}{{"norm", Norm}, {"GAMMA", Gamma}, {"Raw", Raw}} {
		got, err := ParseMode(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != strings.ToLower(tc.in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := ParseMode("rms"); err == nil || !strings.Contains(err.Error(), "gamma") {
		t.Errorf("ParseMode(rms): %v; want an error listing the modes", err)
	}
	if Mode(7).Valid() || Mode(7).String() != "Mode(7)" {
		t.Error("Mode(7) is valid or prints wrong")
	}
}

func TestTopKBottomK(t *testing.T) {
	nan := float32(math.NaN())
	v := []float32{0.5, 3, -1, 3, nan, 2, -1, 7}
	for _, tc := range []struct {
		name string
		got  []Token
		want []Token
	}{
		{"top3", TopK(v, 3), []Token{{7, 7}, {1, 3}, {3, 3}}},
		{"top1", TopK(v, 1), []Token{{7, 7}}},
		{"bottom3", BottomK(v, 3), []Token{{2, -1}, {6, -1}, {0, 0.5}}},
		{"top0", TopK(v, 0), nil},
		{"bottom-1", BottomK(v, -1), nil},
		{"topEmpty", TopK(nil, 3), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
	// all of them: every id once, NaN last in both orders
	all := TopK(v, 100)
	if len(all) != len(v) || all[len(all)-1].ID != 4 {
		t.Fatalf("TopK(all) = %v: want %d tokens ending with the NaN", all, len(v))
	}
	ids := []int32{}
	for _, tok := range all {
		ids = append(ids, tok.ID)
	}
	if want := []int32{7, 1, 3, 5, 0, 2, 6, 4}; !reflect.DeepEqual(ids, want) {
		t.Errorf("TopK order %v, want %v", ids, want)
	}
	if b := BottomK(v, 100); b[len(b)-1].ID != 4 || b[0].ID != 2 {
		t.Errorf("BottomK(all) = %v", b)
	}
	// Rank agrees with TopK's order everywhere
	for r, tok := range all {
		if got := Rank(v, tok.ID); got != r {
			t.Errorf("Rank(%d) = %d, want %d", tok.ID, got, r)
		}
	}
}

func TestSoftmax(t *testing.T) {
	// large logits: exp overflows float32 and float64 unless the max is
	// subtracted first
	l := []float32{1000, 1001, 0}
	e := math.E
	p := Softmax(nil, l)
	want := []float64{1 / (1 + e), e / (1 + e), 0}
	for i := range p {
		// float32 output: 1e-6 absolute is a few ulps at 0.73
		if math.Abs(float64(p[i])-want[i]) > 1e-6 {
			t.Errorf("p[%d] = %v, want %v", i, p[i], want[i])
		}
	}
	dst := make([]float32, 10)
	if q := Softmax(dst, l); &q[0] != &dst[0] || len(q) != 3 {
		t.Error("Softmax did not reuse dst")
	}
	if got, want := LogSoftmaxAt(l, 1), -math.Log1p(1/e); math.Abs(got-want) > 1e-12 {
		t.Errorf("LogSoftmaxAt = %v, want %v", got, want)
	}
	// float64 accumulation: 10⁶ equal logits give exactly uniform mass
	u := make([]float32, 1_000_000)
	var s float64
	for _, x := range Softmax(nil, u) {
		s += float64(x)
	}
	if math.Abs(s-1) > 1e-6 {
		t.Errorf("uniform softmax sums to %v", s)
	}
	if got, want := LogSoftmaxAt(u, 5), -math.Log(1e6); math.Abs(got-want) > 1e-9 {
		t.Errorf("LogSoftmaxAt uniform = %v, want %v", got, want)
	}
	if len(Softmax(nil, nil)) != 0 {
		t.Error("Softmax of nothing is not empty")
	}
}

// refModel is the hand-made lens of TestReference: d_model 2, two tokens,
// γ = (2, ½), W_U rows (1, 0) and (1, 1), eps ½.
var refModel = &Reference{Gamma: []float32{2, 0.5}, W: []float32{1, 0, 1, 1}, D: 2, NVocab: 2, Eps: 0.5}

func TestReference(t *testing.T) {
	// x = (3, 4): mean(x²) + eps = 13, so norm scales by 1/√13; γ ⊙ x =
	// (6, 2); W_U · (6, 2) = (6, 8); W_U · (3, 4) = (3, 7). The second row
	// is zero: RMSNorm of 0 is 0 thanks to eps.
	x := []float32{3, 4, 0, 0}
	r13 := 1 / math.Sqrt(13)
	for _, tc := range []struct {
		mode Mode
		want []float64
	}{
		{Norm, []float64{6 * r13, 8 * r13, 0, 0}},
		{Gamma, []float64{6, 8, 0, 0}},
		{Raw, []float64{3, 7, 0, 0}},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			got := refModel.Unembed(nil, x, 2, tc.mode)
			for i := range tc.want {
				// float32 result of a float64 computation: half an ulp
				if math.Abs(float64(got[i])-tc.want[i]) > 1e-6*math.Abs(tc.want[i]) {
					t.Errorf("logit %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
	dst := make([]float32, 8)
	if got := refModel.Unembed(dst, x[:2], 1, Raw); &got[0] != &dst[0] || len(got) != 2 {
		t.Error("Unembed did not reuse dst")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("3 values as rows of 2 did not panic")
			}
		}()
		refModel.Unembed(nil, x[:3], 1, Norm)
	}()
}

func f32bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func f16bytes(v ...float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], models.Float32ToFloat16(x))
	}
	return b
}

type tensor struct {
	name string
	typ  models.GGMLType
	dims []uint64
	data []byte
}

func writeModel(t *testing.T, arch string, kvs []models.KV, tensors []tensor) *models.File {
	t.Helper()
	w := &models.Writer{}
	if err := w.AddKV("general.architecture", arch); err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ts := range tensors {
		if err := w.AddTensor(ts.name, ts.typ, ts.dims, ts.data); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	f, err := models.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNewReference writes refModel as a GGUF file, tied (token_embd) and
// untied (output.weight, F16) and checks that NewReference reads it back.
func TestNewReference(t *testing.T) {
	llama := []models.KV{
		{Key: "llama.embedding_length", Value: uint32(2)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(0.5)},
	}
	norm := tensor{NormTensor, models.F32, []uint64{2}, f32bytes(2, 0.5)}
	embed := tensor{EmbedTensor, models.F32, []uint64{2, 2}, f32bytes(1, 0, 1, 1)}
	// token_embd here differs from the output matrix: the untied model
	// must read output.weight
	other := tensor{EmbedTensor, models.F32, []uint64{2, 2}, f32bytes(9, 9, 9, 9)}
	output := tensor{OutputTensor, models.F16, []uint64{2, 2}, f16bytes(1, 0, 1, 1)}
	for _, tc := range []struct {
		name    string
		tensors []tensor
		tied    bool
		typ     models.GGMLType
	}{
		{"tied", []tensor{embed, norm}, true, models.F32},
		{"untied", []tensor{other, norm, output}, false, models.F16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeModel(t, "llama", llama, tc.tensors)
			w, err := FindWeights(f)
			if err != nil {
				t.Fatal(err)
			}
			if w.Tied != tc.tied || w.UnembedType != tc.typ || w.D != 2 || w.NVocab != 2 || w.Eps != 0.5 {
				t.Errorf("FindWeights = %+v", w)
			}
			r, err := NewReference(f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r, refModel) {
				t.Errorf("NewReference = %+v, want %+v", r, refModel)
			}
		})
	}
}

func TestFindWeightsErrors(t *testing.T) {
	llama := []models.KV{
		{Key: "llama.embedding_length", Value: uint32(2)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
	}
	norm := tensor{NormTensor, models.F32, []uint64{2}, f32bytes(1, 1)}
	embed := tensor{EmbedTensor, models.F32, []uint64{2, 2}, f32bytes(1, 0, 1, 1)}
	for _, tc := range []struct {
		name    string
		arch    string
		kvs     []models.KV
		tensors []tensor
		want    string
	}{
		{"no norm", "llama", llama, []tensor{embed}, "no output_norm.weight"},
		{"no matrix", "llama", llama, []tensor{norm}, "no unembedding"},
		{"layernorm without bias", "gpt2", []models.KV{{Key: "gpt2.embedding_length", Value: uint32(2)}, {Key: "gpt2.attention.layer_norm_epsilon", Value: float32(1e-5)}},
			[]tensor{embed, norm}, "no output_norm.bias"},
		{"unknown layernorm", "bloom", []models.KV{{Key: "bloom.embedding_length", Value: uint32(2)}, {Key: "bloom.attention.layer_norm_epsilon", Value: float32(1e-5)}},
			[]tensor{embed, norm, {NormBiasTensor, models.F32, []uint64{2}, f32bytes(0, 0)}}, "LayerNorm of an architecture lldiff does not know"},
		{"output bias shape", "gpt2", []models.KV{{Key: "gpt2.embedding_length", Value: uint32(2)}, {Key: "gpt2.attention.layer_norm_epsilon", Value: float32(1e-5)}},
			[]tensor{embed, norm, {NormBiasTensor, models.F32, []uint64{2}, f32bytes(0, 0)}, {OutputBiasTensor, models.F32, []uint64{3}, f32bytes(0, 0, 0)}}, "want F32, F16 or BF16 [2] (n_vocab)"},
		{"norm shape", "llama", llama, []tensor{embed, {NormTensor, models.F32, []uint64{4}, f32bytes(1, 1, 1, 1)}}, "want [2]"},
		{"matrix shape", "llama", llama, []tensor{norm, {OutputTensor, models.F32, []uint64{4, 1}, f32bytes(1, 1, 1, 1)}}, "want [2 n_vocab]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeModel(t, tc.arch, tc.kvs, tc.tensors)
			_, err := FindWeights(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if _, err := NewReference(f); err == nil {
				t.Error("NewReference accepted it")
			}
		})
	}
}
