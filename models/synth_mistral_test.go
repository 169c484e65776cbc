package models

import "testing"

// TestSynthPresetMistral checks the Mistral presets: the llama
// architecture with Mistral 7B v0.3's grouping (4 query heads per kv head)
// and rope base 1e6, written as rope.freq_base.
func TestSynthPresetMistral(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		layers, d, heads, kv, ff, ctx int
		typ                           GGMLType
	}{
		{"mistral-tiny", 2, 64, 8, 2, 224, 512, F32},
		{"mistral-7b-shape", 32, 4096, 32, 8, 14336, 32768, Q4_0},
	} {
		s, err := SynthPreset(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Arch != "llama" || s.NLayer != tc.layers || s.DModel != tc.d || s.NHead != tc.heads || s.NHeadKV != tc.kv || s.DFF != tc.ff ||
			s.NCtx != tc.ctx || s.Type != tc.typ || !s.Untied || s.RopeBase != 1e6 || s.NormEps != 1e-5 {
			t.Errorf("SynthPreset(%q) = %+v", tc.name, s)
		}
	}
	s, _ := SynthPreset("mistral-tiny")
	s.VocabPath = testmodelsVocab(t)
	f := writeSynth(t, s)
	if err := f.CheckRunnable(); err != nil {
		t.Fatal(err)
	}
	if in, _ := f.Info(); in.RopeBase != 1e6 || in.NHeadKV != 2 || in.Arch != "llama" {
		t.Errorf("Info() = %+v", in)
	}
}

func testmodelsVocab(t *testing.T) string { return smallArchSpec(t, "llama", F32).VocabPath }
