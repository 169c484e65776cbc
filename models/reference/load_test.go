package reference

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// quantConfig has every row length a multiple of 32, as Q4_0 and Q8_0 need.
var quantConfig = Config{NLayer: 2, DModel: 32, NHead: 4, NHeadKV: 2, DHead: 8, DFF: 64, NVocab: 10, RopeBase: 10000, NormEps: float64(float32(1e-5))}

// eighthsModel has weights that are multiples of 1/8 in [-0.75, 0.75]: exact
// in F16, and in Q8_0 and Q4_0 with scale 1/8.
func eighthsModel() *Model {
	return formulaModel(quantConfig,
		func(k, i, j int) float32 { return float32((k*31+i*7+j*3)%13-6) / 8 },
		func(k, i int) float32 { return float32(1 + float64((k*5+i)%5-2)/10) })
}

var quantTokens = []int32{1, 5, 2, 9, 0, 3}

// TestLoadRoundTrip writes a synthetic model in each supported tensor type,
// loads it, and expects exactly the activations of the same model built in
// memory: this checks the tensor names, the [in, out] orientation, tied
// embeddings, optional biases and each decoder on a whole model.
func TestLoadRoundTrip(t *testing.T) {
	for _, typ := range []models.GGMLType{models.F32, models.F16, models.Q8_0, models.Q4_0} {
		for _, tied := range []bool{false, true} {
			name := typ.String()
			if tied {
				name += " tied"
			}
			t.Run(name, func(t *testing.T) {
				want := eighthsModel()
				if tied {
					want.unembed = linear{in: quantConfig.DModel, out: quantConfig.NVocab, w: want.tokEmbd}
				}
				kvs, ts := modelGGUF(t, want, typ, tied)
				got := mustLoad(t, writeGGUF(t, kvs, ts))
				if got.Config != want.Config || got.TiedEmbeddings != tied {
					t.Fatalf("config %+v tied %v, want %+v tied %v", got.Config, got.TiedEmbeddings, want.Config, tied)
				}
				compareRuns(t, got, want, quantTokens)
			})
		}
	}
}

// TestLoadBiases: llama.cpp adds blk.L.*.bias when a llama file has them;
// so does the reference.
func TestLoadBiases(t *testing.T) {
	want := eighthsModel()
	kvs, ts := modelGGUF(t, want, models.F32, false)
	ly := &want.layers[1]
	for _, b := range []struct {
		name string
		l    *linear
	}{{"attn_q", &ly.wq}, {"attn_k", &ly.wk}, {"attn_v", &ly.wv}, {"attn_output", &ly.wo}, {"ffn_gate", &ly.gate}, {"ffn_up", &ly.up}, {"ffn_down", &ly.down}} {
		b.l.b = make([]float32, b.l.out)
		for i := range b.l.b {
			b.l.b[i] = float32(i%5-2) / 4
		}
		ts = append(ts, ggufTensor{"blk.1." + b.name + ".bias", models.F32, []uint64{uint64(b.l.out)}, encode(t, models.F32, b.l.b)})
	}
	got := mustLoad(t, writeGGUF(t, kvs, ts))
	compareRuns(t, got, want, quantTokens)
	// And the biases change the result, so the comparison above means something.
	plain := mustRun(t, eighthsModel(), quantTokens)
	withBias := mustRun(t, got, quantTokens)
	if Compare("logits", mustGet(t, withBias, "logits"), mustGet(t, plain, "logits"), 1e-3) == nil {
		t.Error("biases did not change the logits")
	}
}

func compareRuns(t *testing.T, got, want *Model, tokens []int32) {
	t.Helper()
	rg, rw := mustRun(t, got, tokens), mustRun(t, want, tokens)
	if !slices.Equal(rg.Names(), rw.Names()) {
		t.Fatalf("names %v, want %v", rg.Names(), rw.Names())
	}
	for _, name := range rw.Names() {
		// Tolerance 0: the weights decode exactly, and the same arithmetic
		// on the same numbers gives the same bits.
		if err := Compare(name, mustGet(t, rg, name), mustGet(t, rw, name), 0); err != nil {
			t.Error(err)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	type edit func(kvs []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor)
	setKV := func(key string, v any) edit {
		return func(kvs []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			for i := range kvs {
				if kvs[i].key == key {
					kvs[i].value = v
					return kvs, ts
				}
			}
			return append(kvs, ggufKV{key, v}), ts
		}
	}
	dropKV := func(key string) edit {
		return func(kvs []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			return slices.DeleteFunc(kvs, func(kv ggufKV) bool { return kv.key == key }), ts
		}
	}
	tensor := func(name string, f func(*ggufTensor)) edit {
		return func(kvs []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			for i := range ts {
				if ts[i].name == name {
					f(&ts[i])
				}
			}
			return kvs, ts
		}
	}
	ropeFreqs := func(v ...float32) edit {
		return func(kvs []ggufKV, ts []ggufTensor) ([]ggufKV, []ggufTensor) {
			return kvs, append(ts, ggufTensor{"rope_freqs.weight", models.F32, []uint64{uint64(len(v))}, f32Bytes(v)})
		}
	}
	tests := []struct {
		name    string
		edit    edit
		wantErr []string
	}{
		{"architecture", setKV("general.architecture", "bert"), []string{`architecture "bert" is not supported`, "llama, gpt2, gptneox, qwen2, qwen3, phi3, gemma2, gemma3"}},
		// (Q8_1 is an activation format that no decoder here reads.)
		{"tensor type", tensor("blk.0.ffn_down.weight", func(t *ggufTensor) {
			t.typ, t.data = models.Q8_1, make([]byte, 2048/32*36)
		}), []string{"blk.0.ffn_down.weight", "type Q8_1 is not supported", "supports F16, F32, Q4_0, Q8_0"}},
		{"experts", setKV("llama.expert_count", uint32(8)), []string{"mixture-of-experts"}},
		// linear RoPE scaling is applied (TestLoadRopeScaling); the rest
		// of RoPE scaling is refused
		{"rope scaling factor negative", setKV("llama.rope.scaling.factor", float32(-4)), []string{"llama.rope.scaling.factor = -4", "positive finite factor"}},
		{"rope scaling attn factor", setKV("llama.rope.scaling.attn_factor", float32(2)), []string{"llama.rope.scaling.attn_factor = 2", "not supported"}},
		{"rope scaling type", setKV("llama.rope.scaling.type", "yarn"), []string{`RoPE scaling type "yarn"`, "plain RoPE and linear scaling"}},
		{"rope scaling longrope", setKV("llama.rope.scaling.type", "longrope"), []string{`RoPE scaling type "longrope"`}},
		// rope_freqs.weight (Llama 3.1's per-frequency factors) is read for
		// llama, but must hold one positive finite factor per rotated pair
		// (4 for heads of width 8).
		{"rope factors length", ropeFreqs(1, 1, 1), []string{"rope_freqs.weight has shape [3], want [4]", "8-wide head"}},
		{"rope factors zero", ropeFreqs(1, 2, 0, 8), []string{"rope_freqs.weight[2] is 0", "positive finite"}},
		{"rope factors negative", ropeFreqs(1, -1, 4, 8), []string{"rope_freqs.weight[1] is -1"}},
		{"rope factors inf", ropeFreqs(1, 2, 4, float32(math.Inf(1))), []string{"rope_freqs.weight[3] is +Inf"}},
		{"rope factors NaN", ropeFreqs(float32(math.NaN()), 2, 4, 8), []string{"rope_freqs.weight[0] is NaN"}},
		{"partial rope", setKV("llama.rope.dimension_count", uint32(4)), []string{"dimension_count 4 differs from the head width 8"}},
		{"no eps", dropKV("llama.attention.layer_norm_rms_epsilon"), []string{"layer_norm_rms_epsilon is missing"}},
		{"no layer count", dropKV("llama.block_count"), []string{"llama.block_count is missing"}},
		{"uneven heads", setKV("llama.attention.head_count_kv", uint32(3)), []string{"4 query heads cannot share 3 kv heads"}},
		{"shape", tensor("blk.1.ffn_up.weight", func(t *ggufTensor) { t.dims = []uint64{64, 32} }),
			[]string{"blk.1.ffn_up.weight has shape [64 32], want [32 64]"}},
		{"missing tensor", tensor("blk.1.ffn_norm.weight", func(t *ggufTensor) { t.name = "blk.1.ffn_norm.other" }),
			[]string{"blk.1.ffn_norm.weight is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvs, ts := tt.edit(modelGGUF(t, eighthsModel(), models.F32, false))
			path := writeGGUF(t, kvs, ts)
			_, err := Load(path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range append(tt.wantErr, path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// f32Bytes returns v as little-endian float32 bytes.
func f32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestLoadRopeFreqs checks that a llama file with rope_freqs.weight loads
// with its factors, which rotate each pair by its angle divided by the
// factor (ggml_rope_ext's freq_factors).
func TestLoadRopeFreqs(t *testing.T) {
	kvs, ts := modelGGUF(t, eighthsModel(), models.F32, false)
	freqs := []float32{1, 1, 2.5, 8}
	path := writeGGUF(t, kvs, append(ts, ggufTensor{"rope_freqs.weight", models.F32, []uint64{4}, f32Bytes(freqs)}))
	m := mustLoad(t, path)
	if !slices.Equal(m.ropeFreqs, freqs) {
		t.Errorf("rope factors %v, want %v", m.ropeFreqs, freqs)
	}
	plain := mustLoad(t, writeGGUF(t, kvs, ts))
	if plain.ropeFreqs != nil {
		t.Errorf("rope factors %v without rope_freqs.weight, want none", plain.ropeFreqs)
	}
}

// TestConfigMatchesInfo checks the hyperparameters the reference reads
// itself against package models' reading of the same files.
func TestConfigMatchesInfo(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.TinyStories656KF16, testmodels.TinyStories656KQ8} {
		t.Run(name, func(t *testing.T) {
			path := testmodels.Path(t, name)
			f, err := models.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			in, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			c := mustLoad(t, path).Config
			// models.Info gives float32 metadata as its shortest decimal
			// (1e-5); the reference keeps the float32 value (9.99999975e-06).
			got := Config{NLayer: in.NLayer, DModel: in.DModel, NHead: in.NHead, NHeadKV: in.NHeadKV, DHead: in.DHead,
				DFF: in.DFF, NVocab: in.NVocab, RopeBase: in.RopeBase, NormEps: float64(float32(in.NormEps))}
			if got != c || in.RopeDim != c.DHead || in.TiedEmbeddings != mustLoad(t, path).TiedEmbeddings {
				t.Errorf("models.Info %+v (rope dim %d, tied %v)\nreference   %+v", got, in.RopeDim, in.TiedEmbeddings, c)
			}
		})
	}
}
