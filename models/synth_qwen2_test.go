package models

import (
	"math"
	"path/filepath"
	"slices"
	"testing"
)

// smallQwen2Spec is a small qwen2 spec: 2 layers, d_model 64 in 4 heads of
// 16, 2 kv heads, untied, with the GPT-2 vocabulary that stands in for
// Qwen2's.
func smallQwen2Spec(t testing.TB, typ GGMLType) SynthSpec {
	s := smallArchSpec(t, "qwen2", typ)
	s.NHeadKV, s.Untied = 2, true
	return s
}

func TestWriteSyntheticQwen2(t *testing.T) {
	for _, typ := range []GGMLType{F32, F16, Q8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			f := writeSynth(t, smallQwen2Spec(t, typ))
			if err := f.CheckRunnable(); err != nil {
				t.Fatal(err)
			}
			in, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			if in.Arch != "qwen2" || in.NLayer != 2 || in.DModel != 64 || in.NHead != 4 || in.NHeadKV != 2 || in.DHead != 16 ||
				in.NVocab != 50257 || in.RopeBase != 1e6 || in.RopeDim != 16 || in.LayerNorm || in.LearnedPositions ||
				in.TiedEmbeddings || in.TokenizerModel != "gpt2" || in.FileType != typ.String() {
				t.Errorf("Info() = %+v", in)
			}
			if pre, _ := f.String("tokenizer.ggml.pre"); pre != "qwen2" {
				t.Errorf("tokenizer.ggml.pre = %q, want qwen2 (llama.cpp's pre-tokenizer of Qwen2)", pre)
			}
			if tab, err := HookTableOf(in); err != nil || tab.Arch != "qwen2" || !tab.Has(ResidMid) {
				t.Errorf("HookTableOf = %v, %v", tab, err)
			}
			if u, err := FindUnembedding(f); err != nil || u.LayerNorm || u.Tied || u.OutputBias != "" {
				t.Errorf("FindUnembedding = %+v, %v", u, err)
			}
			for name, n := range map[string]uint64{"blk.0.attn_q.bias": 64, "blk.1.attn_k.bias": 32, "blk.1.attn_v.bias": 32} {
				ti, ok := f.Tensor(name)
				if !ok || ti.Type != F32 || !slices.Equal(ti.Dims, []uint64{n}) {
					t.Fatalf("%s: %+v, want F32 [%d]", name, ti, n)
				}
				v, err := f.ReadTensorFloat32(name)
				if err != nil {
					t.Fatal(err)
				}
				// biases are 0.1·N(0,1): a forgotten one shows
				var s, ss float64
				for _, x := range v {
					s += float64(x)
					ss += float64(x) * float64(x)
				}
				if m, ms := s/float64(n), ss/float64(n); math.Abs(m) > 0.06 || ms < 0.004 || ms > 0.025 {
					t.Errorf("%s: mean %.3g, mean square %.3g, want about 0 and 0.01", name, m, ms)
				}
			}
			for _, name := range []string{"blk.0.attn_output.bias", "blk.0.ffn_up.bias", "output_norm.bias", "position_embd.weight"} {
				if _, ok := f.Tensor(name); ok {
					t.Errorf("qwen2 has no %s", name)
				}
			}
		})
	}
}

func TestSynthPresetQwen2(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		layers, d, heads, kv, ff, ctx int
		untied                        bool
		typ                           GGMLType
	}{
		{"qwen2-tiny", 2, 64, 4, 2, 128, 512, true, F32},
		{"qwen2-0.5b", 24, 896, 14, 2, 4864, 32768, false, Q8_0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SynthPreset(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Arch != "qwen2" || s.NLayer != tc.layers || s.DModel != tc.d || s.NHead != tc.heads || s.NHeadKV != tc.kv ||
				s.DFF != tc.ff || s.NCtx != tc.ctx || s.Untied != tc.untied || s.Type != tc.typ || s.RopeBase != 1e6 || s.NormEps != 1e-6 {
				t.Errorf("SynthPreset(%q) = %+v", tc.name, s)
			}
			if _, err := s.normalize(); err != nil {
				t.Error(err)
			}
		})
	}
}

// copyTensors writes f again with each tensor renamed by rename, or left
// out where rename returns "".
func copyTensors(t *testing.T, f *File, rename func(string) string) *File {
	t.Helper()
	var w Writer
	for _, kv := range f.KVs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		n := rename(ti.Name)
		if n == "" {
			continue
		}
		data, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(n, ti.Type, ti.Dims, data); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "copy.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	g, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestCheckRunnableQwen2 checks that the validator finds what llama.cpp's
// qwen2 loader refuses (load_tensors for LLM_ARCH_QWEN2) and accepts what
// it accepts: the q, k and v biases are optional, with fixed shapes; an
// output-projection or MLP bias is a tensor it does not load.
func TestCheckRunnableQwen2(t *testing.T) {
	f := writeSynth(t, smallQwen2Spec(t, F32))
	same := func(kvs []KV) []KV { return kvs }
	for _, tc := range []struct {
		name   string
		edit   func(kvs []KV) []KV
		rename func(string) string
		want   []string // nil: runnable
	}{
		{"without biases", same, func(n string) string {
			if slices.Contains([]string{".attn_q.bias", ".attn_k.bias", ".attn_v.bias"}, n[len("blk.0"):]) {
				return ""
			}
			return n
		}, nil},
		{"k bias of q's shape", same, func(n string) string {
			switch n {
			case "blk.1.attn_k.bias":
				return ""
			case "blk.1.attn_q.bias":
				return "blk.1.attn_k.bias"
			}
			return n
		}, []string{"tensor blk.1.attn_k.bias has shape [64], want [32]"}},
		{"output bias", same, func(n string) string {
			if n == "blk.0.attn_q.bias" {
				return "blk.0.attn_output.bias"
			}
			return n
		}, []string{"tensor blk.0.attn_output.bias is not part of a 2-layer qwen2 model"}},
		{"missing matrix", same, func(n string) string {
			if n == "blk.1.attn_v.weight" {
				return ""
			}
			return n
		}, []string{"missing tensor blk.1.attn_v.weight"}},
		{"partial rope", func(kvs []KV) []KV { return setKV(kvs, "qwen2.rope.dimension_count", uint32(8)) }, nil,
			[]string{"qwen2.rope.dimension_count 8 differs from the head dimension 16"}},
		{"no epsilon", func(kvs []KV) []KV { return deleteKV(kvs, "qwen2.attention.layer_norm_rms_epsilon") }, nil,
			[]string{"missing metadata key qwen2.attention.layer_norm_rms_epsilon"}},
		{"heads narrower than d_model", func(kvs []KV) []KV {
			kvs = setKV(kvs, "qwen2.attention.key_length", uint32(8))
			return setKV(setKV(kvs, "qwen2.attention.value_length", uint32(8)), "qwen2.rope.dimension_count", uint32(8))
		}, nil, []string{"layer 0 has 4 heads of 8, not d_model 64"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			if tc.rename != nil {
				g = copyTensors(t, g, tc.rename)
			}
			g = rewrite(t, g, tc.edit)
			err := g.CheckRunnable()
			if tc.want == nil {
				if err != nil {
					t.Errorf("CheckRunnable() = %v, want nil", err)
				}
				return
			}
			if err == nil || !containsAll(err.Error(), tc.want...) {
				t.Errorf("CheckRunnable() = %v, want %q", err, tc.want)
			}
		})
	}
}
