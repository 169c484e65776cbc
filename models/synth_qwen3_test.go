package models

import (
	"path/filepath"
	"slices"
	"testing"
)

// smallQwen3Spec is a small qwen3 spec: 2 layers, d_model 64 in 4 heads
// of 32 (q spans 128, twice d_model, as Qwen3's heads may), 2 kv heads,
// tied, with the GPT-2 vocabulary standing in for Qwen's.
func smallQwen3Spec(t testing.TB, typ GGMLType) SynthSpec {
	s := smallArchSpec(t, "qwen3", typ)
	s.NHeadKV, s.HeadDim = 2, 32
	return s
}

func TestWriteSyntheticQwen3(t *testing.T) {
	for _, typ := range []GGMLType{F32, F16, Q8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			f := writeSynth(t, smallQwen3Spec(t, typ))
			if err := f.CheckRunnable(); err != nil {
				t.Fatal(err)
			}
			in, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			if in.Arch != "qwen3" || in.NLayer != 2 || in.DModel != 64 || in.NHead != 4 || in.NHeadKV != 2 || in.DHead != 32 ||
				in.NVocab != 50257 || in.RopeBase != 1e6 || in.RopeDim != 32 || in.LayerNorm || !in.TiedEmbeddings ||
				in.TokenizerModel != "gpt2" || in.FileType != typ.String() {
				t.Errorf("Info() = %+v", in)
			}
			if pre, _ := f.String("tokenizer.ggml.pre"); pre != "qwen2" {
				t.Errorf("tokenizer.ggml.pre = %q, want qwen2 (llama.cpp's pre-tokenizer of Qwen2 and Qwen3)", pre)
			}
			if tab, err := HookTableOf(in); err != nil || tab.Arch != "qwen3" || !tab.Has(ResidMid) {
				t.Errorf("HookTableOf = %v, %v", tab, err)
			}
			for name, dims := range map[string][]uint64{
				"blk.0.attn_q.weight": {64, 128}, "blk.1.attn_k.weight": {64, 64}, "blk.1.attn_output.weight": {128, 64},
				"blk.0.attn_q_norm.weight": {32}, "blk.1.attn_k_norm.weight": {32},
			} {
				ti, ok := f.Tensor(name)
				if !ok || !slices.Equal(ti.Dims, dims) {
					t.Fatalf("%s: %+v, want %v", name, ti, dims)
				}
			}
			// the head norms are 1 + 0.1·N(0,1): a forgotten one shows
			v, err := f.ReadTensorFloat32("blk.1.attn_k_norm.weight")
			if err != nil {
				t.Fatal(err)
			}
			var s, ss float64
			for _, x := range v {
				s += float64(x) - 1
				ss += (float64(x) - 1) * (float64(x) - 1)
			}
			if m, ms := s/32, ss/32; m < -0.07 || m > 0.07 || ms < 0.004 || ms > 0.025 {
				t.Errorf("attn_k_norm: mean deviation from 1 %.3g, mean square %.3g, want about 0 and 0.01", m, ms)
			}
			for _, name := range []string{"blk.0.attn_q.bias", "output.weight", "output_norm.bias"} {
				if _, ok := f.Tensor(name); ok {
					t.Errorf("tied qwen3 has no %s", name)
				}
			}
		})
	}
}

func TestSynthPresetQwen3(t *testing.T) {
	for _, tc := range []struct {
		name                              string
		layers, d, heads, kv, dh, ff, ctx int
		typ                               GGMLType
	}{
		{"qwen3-tiny", 2, 64, 4, 2, 32, 128, 512, F32},
		{"qwen3-0.6b-shape", 28, 1024, 16, 8, 128, 3072, 40960, Q8_0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SynthPreset(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Arch != "qwen3" || s.NLayer != tc.layers || s.DModel != tc.d || s.NHead != tc.heads || s.NHeadKV != tc.kv || s.HeadDim != tc.dh ||
				s.DFF != tc.ff || s.NCtx != tc.ctx || s.Untied || s.Type != tc.typ || s.RopeBase != 1e6 || s.NormEps != 1e-6 {
				t.Errorf("SynthPreset(%q) = %+v", tc.name, s)
			}
			if _, err := s.normalize(); err != nil {
				t.Error(err)
			}
		})
	}
	s := smallArchSpec(t, "qwen2", F32)
	s.HeadDim = 32
	if _, err := s.normalize(); err == nil {
		t.Error("qwen2 with HeadDim 32 over d_model 64 in 4 heads: no error")
	}
}

// TestCheckRunnableQwen3 checks that the validator finds what llama.cpp's
// qwen3 loader refuses (load_tensors for LLM_ARCH_QWEN3): the per-head
// norms are required with the head width, and there are no biases.
func TestCheckRunnableQwen3(t *testing.T) {
	f := writeSynth(t, smallQwen3Spec(t, F32))
	same := func(kvs []KV) []KV { return kvs }
	for _, tc := range []struct {
		name   string
		edit   func(kvs []KV) []KV
		rename func(string) string
		want   []string
	}{
		{"missing q norm", same, func(n string) string {
			if n == "blk.1.attn_q_norm.weight" {
				return ""
			}
			return n
		}, []string{"missing tensor blk.1.attn_q_norm.weight"}},
		{"q bias", same, nil, []string{"tensor blk.0.attn_q.bias is not part of a 2-layer qwen3 model"}},
		{"k norm of d_model", same, func(n string) string {
			switch n {
			case "blk.0.attn_k_norm.weight":
				return ""
			case "blk.0.attn_norm.weight":
				return "blk.0.attn_k_norm.weight"
			}
			return n
		}, []string{"missing tensor blk.0.attn_norm.weight"}},
		{"head width", func(kvs []KV) []KV {
			kvs = setKV(kvs, "qwen3.attention.key_length", uint32(16))
			return setKV(setKV(kvs, "qwen3.attention.value_length", uint32(16)), "qwen3.rope.dimension_count", uint32(16))
		}, nil, []string{"tensor blk.0.attn_q_norm.weight has shape [32], want [16]", "tensor blk.0.attn_q.weight has shape [64 128], want [64 64]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			if tc.name == "q bias" {
				g = withTensor(t, g, "blk.0.attn_q.bias", 128)
			}
			if tc.rename != nil {
				g = copyTensors(t, g, tc.rename)
			}
			g = rewrite(t, g, tc.edit)
			err := g.CheckRunnable()
			if err == nil || !containsAll(err.Error(), tc.want...) {
				t.Errorf("CheckRunnable() = %v, want %q", err, tc.want)
			}
		})
	}
}

// withTensor writes f again with an extra F32 tensor of n zeros.
func withTensor(t *testing.T, f *File, name string, n uint64) *File {
	t.Helper()
	var w Writer
	for _, kv := range f.KVs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		data, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddTensor(name, F32, []uint64{n}, make([]byte, 4*n)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "extra.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	g, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
