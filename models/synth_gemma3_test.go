package models

import (
	"slices"
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
