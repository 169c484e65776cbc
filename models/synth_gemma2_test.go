package models

import (
	"math"
	"slices"
	"testing"
)

// smallGemma2Spec is a small gemma2 spec: 2 layers, d_model 64 in 4 heads
// of 32 (2 kv heads), sliding window 8, with Llama 2's vocabulary standing
// in for Gemma's.
func smallGemma2Spec(t testing.TB, typ GGMLType) SynthSpec {
	s := smallArchSpec(t, "gemma2", typ)
	s.NHeadKV, s.HeadDim, s.SlidingWindow = 2, 32, 8
	return s
}

func TestWriteSyntheticGemma2(t *testing.T) {
	f := writeSynth(t, smallGemma2Spec(t, Q8_0))
	if err := f.CheckRunnable(); err != nil {
		t.Fatal(err)
	}
	in, err := f.Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.Arch != "gemma2" || in.NLayer != 2 || in.DModel != 64 || in.NHead != 4 || in.NHeadKV != 2 || in.DHead != 32 ||
		in.NVocab != 32000 || in.RopeDim != 32 || math.Abs(in.NormEps-1e-6) > 1e-12 || !in.TiedEmbeddings || in.TokenizerModel != "llama" {
		t.Errorf("Info() = %+v", in)
	}
	for key, want := range map[string]float64{"gemma2.attn_logit_softcapping": 50, "gemma2.final_logit_softcapping": 30} {
		if v, ok := f.Float(key); !ok || v != want {
			t.Errorf("%s = %v, want %v", key, v, want)
		}
	}
	if w, ok := f.Uint("gemma2.attention.sliding_window"); !ok || w != 8 {
		t.Errorf("sliding window %d", w)
	}
	for name, dims := range map[string][]uint64{
		"blk.0.attn_q.weight": {64, 128}, "blk.1.attn_output.weight": {128, 64},
		"blk.0.post_attention_norm.weight": {64}, "blk.1.post_ffw_norm.weight": {64},
	} {
		ti, ok := f.Tensor(name)
		if !ok || !slices.Equal(ti.Dims, dims) {
			t.Fatalf("%s: %+v, want %v", name, ti, dims)
		}
	}
	if _, ok := f.Tensor("output.weight"); ok {
		t.Error("gemma2 has no output.weight")
	}
	tab, err := HookTableOf(in)
	if err != nil || tab.Arch != "gemma2" || tab.Pattern(MLPOut) != "ffn_post_norm (op MUL, reading blk.L.post_ffw_norm.weight)" ||
		tab.Pattern(ResidPre) != "inp_scaled (L=0), l_out-(L-1)" || tab.Pattern(AttnOut) != "attn_post_norm-L" || tab.Pattern(ResidMid) != "sa_out-L" {
		t.Errorf("hook table %+v, %v", tab, err)
	}
	s := smallGemma2Spec(t, F32)
	s.Untied = true
	if n, err := s.normalize(); err != nil || n.Untied {
		t.Errorf("gemma2 untied: %+v, %v; want it tied (llama.cpp's loader has no output.weight)", n, err)
	}
	s = smallArchSpec(t, "llama", F32)
	s.FinalSoftcap = 30
	if _, err := s.normalize(); err == nil {
		t.Error("llama with a final soft-cap: no error")
	}
}

func TestSynthPresetGemma2(t *testing.T) {
	s, err := SynthPreset("gemma2-2b-shape")
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if n.Arch != "gemma2" || n.NLayer != 26 || n.DModel != 2304 || n.NHead != 8 || n.NHeadKV != 4 || n.HeadDim != 256 || n.DFF != 9216 ||
		n.SlidingWindow != 4096 || n.AttnSoftcap != 50 || n.FinalSoftcap != 30 || n.NormEps != 1e-6 || n.RopeBase != 10000 || n.Untied {
		t.Errorf("gemma2-2b-shape: %+v", n)
	}
}

// TestCheckRunnableGemma2 checks that the validator finds what llama.cpp's
// gemma2 loader refuses or divides by.
func TestCheckRunnableGemma2(t *testing.T) {
	f := writeSynth(t, smallGemma2Spec(t, F32))
	same := func(kvs []KV) []KV { return kvs }
	for _, tc := range []struct {
		name   string
		edit   func(kvs []KV) []KV
		rename func(string) string
		want   []string
	}{
		{"missing post norm", same, func(n string) string {
			if n == "blk.1.post_ffw_norm.weight" {
				return ""
			}
			return n
		}, []string{"missing tensor blk.1.post_ffw_norm.weight"}},
		{"output matrix", same, func(n string) string {
			if n == "blk.0.post_attention_norm.weight" {
				return "output.weight"
			}
			return n
		}, []string{"missing tensor blk.0.post_attention_norm.weight"}},
		{"zero final cap", func(kvs []KV) []KV { return setKV(kvs, "gemma2.final_logit_softcapping", float32(0)) }, nil,
			[]string{"gemma2.final_logit_softcapping is 0"}},
		{"zero window", func(kvs []KV) []KV { return setKV(kvs, "gemma2.attention.sliding_window", uint32(0)) }, nil,
			[]string{"gemma2.attention.sliding_window is 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := f
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
	if err := withTensor(t, f, "output.weight", 4).CheckRunnable(); err == nil || !containsAll(err.Error(), "tensor output.weight is not part of a 2-layer gemma2 model") {
		t.Errorf("gemma2 with output.weight: %v", err)
	}
}
