package models

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestWriteSyntheticGemma3(t *testing.T) {
	s := smallArchSpec(t, "gemma3", Q8_0)
	s.NLayer, s.NHeadKV, s.HeadDim, s.SlidingWindow, s.Untied = 6, 2, 32, 8, true
	f := writeSynth(t, s)
	if err := f.CheckRunnable(); err != nil {
		t.Fatal(err)
	}
	in, err := f.Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.Arch != "gemma3" || in.NLayer != 6 || in.DHead != 32 || in.RopeBase != 1e6 || in.TiedEmbeddings {
		t.Errorf("Info() = %+v", in)
	}
	if _, ok := f.Get("gemma3.final_logit_softcapping"); ok {
		t.Error("gemma3 has no final soft-cap unless asked for")
	}
	if _, ok := f.Get("gemma3.attn_logit_softcapping"); ok {
		t.Error("gemma3 has no attention soft-cap")
	}
	for name, dims := range map[string][]uint64{
		"blk.5.attn_q_norm.weight": {32}, "blk.0.attn_k_norm.weight": {32}, "blk.3.post_ffw_norm.weight": {64}, "output.weight": {64, 32000},
	} {
		if ti, ok := f.Tensor(name); !ok || !slices.Equal(ti.Dims, dims) {
			t.Errorf("%s: %+v, want %v", name, ti, dims)
		}
	}
	tab, err := HookTableOf(in)
	if err != nil || tab.Pattern(MLPOut) != "ffn_post_norm-L" || tab.Pattern(AttnOut) != "attn_post_norm-L" || tab.Pattern(ResidPre) != "inp_scaled (L=0), l_out-(L-1)" {
		t.Errorf("hook table %+v, %v", tab, err)
	}
	u, err := FindUnembedding(f)
	if err != nil || u.FinalSoftcap != 0 || u.Tied {
		t.Errorf("FindUnembedding = %+v, %v; want no soft-cap, untied", u, err)
	}
	g := copyTensors(t, f, func(n string) string {
		if n == "blk.2.attn_q_norm.weight" {
			return ""
		}
		return n
	})
	if err := g.CheckRunnable(); err == nil || !containsAll(err.Error(), "missing tensor blk.2.attn_q_norm.weight") {
		t.Errorf("gemma3 without a q norm: %v", err)
	}
	s.NLayer = 5
	if _, err := s.normalize(); err == nil {
		t.Error("gemma3 with 5 layers, all in the sliding window: no error")
	}
	h := copyTensors(t, rewrite(t, f, func(kvs []KV) []KV { return setKV(kvs, "gemma3.block_count", uint32(5)) }), func(n string) string {
		if len(n) > 6 && n[:6] == "blk.5." {
			return ""
		}
		return n
	})
	if err := h.CheckRunnable(); err == nil || !containsAll(err.Error(), "5 layers all use the sliding window", "llama.cpp aborts") {
		t.Errorf("gemma3 with 5 layers: %v", err)
	}
	p, err := SynthPreset("gemma3-1b-shape")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.normalize(); err != nil || n.NLayer != 26 || n.DModel != 1152 || n.NHead != 4 || n.NHeadKV != 1 || n.HeadDim != 256 ||
		n.DFF != 6912 || n.SlidingWindow != 512 || n.RopeBase != 1e6 || n.FinalSoftcap != 0 || n.Untied {
		t.Errorf("gemma3-1b-shape: %+v, %v", n, err)
	}
}

// TestWriteSyntheticGemma3RopeScaling checks RopeScaleLinear: the two keys
// llama.cpp's converter writes for Gemma 3 4B, 12B and 27B, a file that
// passes CheckRunnable, the gemma3-4b-shape preset with Gemma 3 4B's
// values, and the factors normalize refuses.
func TestWriteSyntheticGemma3RopeScaling(t *testing.T) {
	s := smallArchSpec(t, "gemma3", F32)
	s.NLayer, s.HeadDim, s.SlidingWindow, s.RopeScaleLinear = 6, 32, 8, 8
	f := writeSynth(t, s)
	if err := f.CheckRunnable(); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("gemma3.rope.scaling.type"); v != "linear" {
		t.Errorf("gemma3.rope.scaling.type = %v, want linear", v)
	}
	if v, _ := f.Get("gemma3.rope.scaling.factor"); v != float32(8) {
		t.Errorf("gemma3.rope.scaling.factor = %v (%T), want float32 8", v, v)
	}
	s.RopeScaleLinear = 0
	if _, ok := writeSynth(t, s).Get("gemma3.rope.scaling.type"); ok {
		t.Error("RopeScaleLinear 0 wrote a rope.scaling.type")
	}

	p, err := SynthPreset("gemma3-4b-shape")
	if err != nil {
		t.Fatal(err)
	}
	// google/gemma-3-4b-pt's text_config: 34 layers, hidden 2560, 8 heads
	// of 256 with 4 kv heads, intermediate 10240, sliding window 1024,
	// rope_theta 1e6 with rope_scaling linear 8, 131072 positions
	if n, err := p.normalize(); err != nil || n.NLayer != 34 || n.DModel != 2560 || n.NHead != 8 || n.NHeadKV != 4 || n.HeadDim != 256 ||
		n.DFF != 10240 || n.NCtx != 131072 || n.SlidingWindow != 1024 || n.RopeBase != 1e6 || n.RopeScaleLinear != 8 ||
		n.NormEps != 1e-6 || n.FinalSoftcap != 0 || n.Untied {
		t.Errorf("gemma3-4b-shape: %+v, %v", n, err)
	}

	for _, tc := range []struct {
		arch   string
		factor float64
		want   string
	}{
		{"gemma3", -8, "factor -8 must be a positive finite number"},
		{"gemma3", math.NaN(), "factor NaN"},
		{"gemma3", math.Inf(1), "factor +Inf"},
		{"gemma3", 1e-40, "factor 1e-40"}, // its float32 inverse overflows
		{"gpt2", 8, "gpt2 has none"},
	} {
		s := smallArchSpec(t, tc.arch, F32)
		if tc.arch == "gemma3" {
			s.NLayer = 6
		}
		s.RopeScaleLinear = tc.factor
		if _, err := s.normalize(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with factor %v: %v, want an error containing %q", tc.arch, tc.factor, err, tc.want)
		}
	}
}
