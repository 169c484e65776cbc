package models

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// TestLlama3RopeFreqs checks the factors against llama.cpp's
// convert_hf_to_gguf.py for Llama 3.1 (rope_theta 500000, head width 128),
// evaluated in Python: 29 factors of 1, six in between, 29 of 8.
func TestLlama3RopeFreqs(t *testing.T) {
	got := Llama3RopeFreqs(500000, 128)
	middle := []float64{1.207483871283662, 1.5534146285049255, 2.0263132059050557, 2.6945296878947333, 3.684252527745718, 5.257326588708467}
	if len(got) != 64 {
		t.Fatalf("%d factors, want 64", len(got))
	}
	for i, g := range got {
		want := 1.0
		switch {
		case i >= 29+len(middle):
			want = 8
		case i >= 29:
			want = float64(float32(middle[i-29]))
		}
		if float64(g) != want {
			t.Errorf("factor %d = %.9g, want %.9g", i, g, want)
		}
	}
}

// TestWriteSyntheticLlama3Rope checks the file a Llama3Rope spec gives:
// rope_freqs.weight of Llama3RopeFreqs for the head width, and rope base
// 500000 by default.
func TestWriteSyntheticLlama3Rope(t *testing.T) {
	spec, err := SynthPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	spec.RopeBase, spec.Llama3Rope = 0, true
	path := filepath.Join(t.TempDir(), "llama3.gguf")
	if err := WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := f.Get("llama.rope.freq_base"); b != float32(500000) {
		t.Errorf("rope base %v, want 500000", b)
	}
	ti, ok := f.Tensor("rope_freqs.weight")
	if !ok || ti.Type != F32 || len(ti.Dims) != 1 || ti.Dims[0] != 8 {
		t.Fatalf("rope_freqs.weight %+v, want F32 [8]", ti)
	}
	raw, err := f.ReadTensor("rope_freqs.weight")
	if err != nil {
		t.Fatal(err)
	}
	want := Llama3RopeFreqs(500000, 16)
	for i, w := range want {
		g := math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		if g != w {
			t.Errorf("rope_freqs.weight[%d] = %g, want %g", i, g, w)
		}
	}
	if err := f.CheckRunnable(); err != nil {
		t.Errorf("the file does not pass the validator: %v", err)
	}

	spec.Arch = "qwen2"
	if err := WriteSynthetic(filepath.Join(t.TempDir(), "q.gguf"), spec); err == nil || !strings.Contains(err.Error(), "Llama3Rope is a llama setting") {
		t.Errorf("qwen2 with Llama3Rope: error %v", err)
	}
}
