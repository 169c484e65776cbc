package models

import (
	"slices"
	"testing"
)

// smallPhi3Spec is a small phi3 spec: 2 layers, d_model 64 in 4 heads of
// 16 with 2 kv heads, untied, with Llama 2's vocabulary standing in for
// Phi-3's.
func smallPhi3Spec(t testing.TB, typ GGMLType) SynthSpec {
	s := smallArchSpec(t, "phi3", typ)
	s.NHeadKV, s.Untied = 2, true
	return s
}

func TestWriteSyntheticPhi3(t *testing.T) {
	for _, typ := range []GGMLType{F32, Q8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			f := writeSynth(t, smallPhi3Spec(t, typ))
			if err := f.CheckRunnable(); err != nil {
				t.Fatal(err)
			}
			in, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			if in.Arch != "phi3" || in.NLayer != 2 || in.DModel != 64 || in.NHead != 4 || in.NHeadKV != 2 || in.DHead != 16 ||
				in.NVocab != 32000 || in.RopeBase != 10000 || in.RopeDim != 16 || in.LayerNorm || in.TiedEmbeddings ||
				in.TokenizerModel != "llama" || in.FileType != typ.String() {
				t.Errorf("Info() = %+v", in)
			}
			tab, err := HookTableOf(in)
			if err != nil || tab.Arch != "phi3" || !tab.Has(ResidMid) || tab.Check(ResidMid) != nil || len(tab.Missing) != 0 {
				t.Errorf("HookTableOf = %v, %v", tab, err)
			}
			// resid_mid is the unnamed ADD that reads the W_O product (in
			// the last layer through GET_ROWS), found by a source's source
			if n, _ := tab.Node(Hook{Kind: ResidMid, Layer: 1}); n != (Node{Layer: -1, Op: "ADD", ViaOp: "MUL_MAT", Via: "blk.1.attn_output.weight"}) {
				t.Errorf("resid_mid.1 is node %v", n)
			}
			if p := tab.Pattern(ResidMid); p != "unnamed (op ADD, reading the MUL_MAT that reads blk.L.attn_output.weight, or GET_ROWS of it)" {
				t.Errorf("Pattern(resid_mid) = %q", p)
			}
			for name, dims := range map[string][]uint64{
				"blk.0.attn_qkv.weight": {64, 64 + 2*32}, "blk.1.ffn_up.weight": {64, 256}, "blk.1.ffn_down.weight": {128, 64},
				"blk.0.attn_output.weight": {64, 64}, "output.weight": {64, 32000},
			} {
				ti, ok := f.Tensor(name)
				if !ok || !slices.Equal(ti.Dims, dims) || ti.Type != typ {
					t.Fatalf("%s: %+v, want %s %v", name, ti, typ, dims)
				}
			}
			for _, name := range []string{"blk.0.attn_q.weight", "blk.0.ffn_gate.weight", "blk.0.attn_qkv.bias"} {
				if _, ok := f.Tensor(name); ok {
					t.Errorf("phi3 has no %s", name)
				}
			}
		})
	}
}

func TestSynthPresetPhi3(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		layers, d, heads, ff, ctx int
		typ                       GGMLType
	}{
		{"phi3-tiny", 2, 64, 4, 128, 512, F32},
		{"phi3-mini-shape", 32, 3072, 32, 8192, 4096, Q4_0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SynthPreset(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Arch != "phi3" || s.NLayer != tc.layers || s.DModel != tc.d || s.NHead != tc.heads || s.NHeadKV != tc.heads ||
				s.DFF != tc.ff || s.NCtx != tc.ctx || !s.Untied || s.Type != tc.typ || s.RopeBase != 10000 || s.NormEps != 1e-5 {
				t.Errorf("SynthPreset(%q) = %+v", tc.name, s)
			}
			if _, err := s.normalize(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCheckRunnablePhi3 checks that the validator finds what llama.cpp's
// phi3 loader refuses (load_tensors for LLM_ARCH_PHI3).
func TestCheckRunnablePhi3(t *testing.T) {
	f := writeSynth(t, smallPhi3Spec(t, F32))
	same := func(kvs []KV) []KV { return kvs }
	drop := func(name string) func(string) string {
		return func(n string) string {
			if n == name {
				return ""
			}
			return n
		}
	}
	for _, tc := range []struct {
		name   string
		edit   func(kvs []KV) []KV
		rename func(string) string
		want   []string
	}{
		{"missing qkv", same, drop("blk.1.attn_qkv.weight"), []string{"missing tensor blk.1.attn_qkv.weight"}},
		{"separate q", same, func(n string) string {
			if n == "blk.0.attn_qkv.weight" {
				return "blk.0.attn_q.weight"
			}
			return n
		}, []string{"missing tensor blk.0.attn_qkv.weight"}},
		{"up of d_ff rows", same, func(n string) string {
			switch n {
			case "blk.0.ffn_up.weight":
				return ""
			case "blk.0.ffn_down.weight":
				return "blk.0.ffn_up.weight"
			}
			return n
		}, []string{"tensor blk.0.ffn_up.weight has shape [128 64], want [64 256]"}},
		{"rope dim", func(kvs []KV) []KV { return setKV(kvs, "phi3.rope.dimension_count", uint32(18)) }, nil,
			[]string{"phi3.rope.dimension_count 18 must be even and in 2..16"}},
		{"wrong kv heads", func(kvs []KV) []KV { return setKV(kvs, "phi3.attention.head_count_kv", uint32(4)) }, nil,
			[]string{"tensor blk.0.attn_qkv.weight has shape [64 128], want [64 192]"}},
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
	// the loader's optional long-context factors
	g := withTensor(t, f, "rope_factors_long.weight", 8)
	if err := g.CheckRunnable(); err != nil {
		t.Errorf("with rope_factors_long.weight [8]: %v", err)
	}
	g = withTensor(t, f, "rope_factors_short.weight", 16)
	if err := g.CheckRunnable(); err == nil || !containsAll(err.Error(), "tensor rope_factors_short.weight has shape [16], want [8]") {
		t.Errorf("with rope_factors_short.weight [16]: %v", err)
	}
}
