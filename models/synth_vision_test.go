package models

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestWriteSynthVision checks the pair against what clip.cpp's loader and
// mtmd read: the keys of an idefics3 vision encoder, tensor shapes that
// follow from the spec, a projector as wide as the language model, and a
// vocabulary holding the tokens mtmd wraps images in.
func TestWriteSynthVision(t *testing.T) {
	dir := t.TempDir()
	lmPath, mmPath := filepath.Join(dir, "lm.gguf"), filepath.Join(dir, "mmproj.gguf")
	lm, v := SmolVLMTiny()
	lm.Seed = 3
	if err := WriteSynthVision(lmPath, mmPath, lm, v); err != nil {
		t.Fatal(err)
	}
	f, err := Open(mmPath)
	if err != nil {
		t.Fatal(err)
	}
	if a := f.Architecture(); a != "clip" {
		t.Errorf("mmproj architecture %q, want clip", a)
	}
	if p, _ := f.String("clip.projector_type"); p != "idefics3" {
		t.Errorf("projector type %q", p)
	}
	for key, want := range map[string]uint64{
		"clip.vision.embedding_length": uint64(v.DModel), "clip.vision.block_count": uint64(v.NLayer),
		"clip.vision.image_size": uint64(v.ImageSize), "clip.vision.patch_size": uint64(v.PatchSize),
		"clip.vision.projector.scale_factor": uint64(v.ScaleFactor), "clip.vision.projection_dim": uint64(lm.DModel),
	} {
		if got, ok := f.Uint(key); !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", key, got, ok, want)
		}
	}
	nPatch := uint64(v.ImageSize/v.PatchSize) * uint64(v.ImageSize/v.PatchSize)
	for name, dims := range map[string][]uint64{
		"v.patch_embd.weight":     {uint64(v.PatchSize), uint64(v.PatchSize), 3, uint64(v.DModel)},
		"v.position_embd.weight":  {uint64(v.DModel), nPatch},
		"v.blk.1.ffn_down.weight": {uint64(v.DFF), uint64(v.DModel)},
		// the merged patches (d × scale²) to the language model's d_model
		"mm.model.fc.weight": {uint64(v.DModel * v.ScaleFactor * v.ScaleFactor), uint64(lm.DModel)},
	} {
		ti, ok := f.Tensor(name)
		if !ok || !slices.Equal(ti.Dims, dims) {
			t.Errorf("%s: %v (present %v), want %v", name, ti, ok, dims)
		}
	}
	if got := v.ImageTokens(); got != 64 {
		t.Errorf("tokens per tile %d, want 64 (16×16 patches merged 2×2)", got)
	}
	g, err := Open(lmPath)
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := g.Strings("tokenizer.ggml.tokens")
	base, err := ShippedVocab("llama")
	if err != nil {
		t.Fatal(err)
	}
	baseToks, _ := base.Strings("tokenizer.ggml.tokens")
	if len(toks) != len(baseToks)+len(VisionExtraTokens) {
		t.Fatalf("vocabulary of %d tokens, want %d + %d", len(toks), len(baseToks), len(VisionExtraTokens))
	}
	for _, x := range VisionExtraTokens {
		if !slices.Contains(toks, x) {
			t.Errorf("vocabulary lacks %q", x)
		}
	}
	types, _ := g.Get("tokenizer.ggml.token_type")
	if tt := types.([]int32); tt[len(tt)-1] != 4 {
		t.Errorf("added token type %d, want 4 (user-defined)", tt[len(tt)-1])
	}
	if n, _ := g.Uint("llama.vocab_size"); int(n) != len(toks) {
		t.Errorf("llama.vocab_size %d, tokens %d", n, len(toks))
	}
}

func TestWriteSynthVisionErrors(t *testing.T) {
	dir := t.TempDir()
	lm, v := SmolVLMTiny()
	bad := v
	bad.ImageSize = 60 // not a multiple of patch 4 × scale 2
	if err := WriteSynthVision(filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf"), lm, bad); err == nil || !strings.Contains(err.Error(), "multiple") {
		t.Errorf("image size 60: %v", err)
	}
	sq := v
	sq.DFF = sq.DModel
	if err := WriteSynthVision(filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf"), lm, sq); err == nil || !strings.Contains(err.Error(), "d_ff") {
		t.Errorf("square MLP: %v", err)
	}
	p := filepath.Join(dir, "same.gguf")
	if err := WriteSynthVision(p, p, lm, v); err == nil {
		t.Error("one path for both files: no error")
	}
	if err := WriteSynthVision(filepath.Join(dir, "lm.gguf"), filepath.Join(dir, "mm.gguf"), lm, v); err != nil {
		t.Fatal(err)
	}
	if err := WriteSynthVision(filepath.Join(dir, "lm.gguf"), filepath.Join(dir, "mm2.gguf"), lm, v); err == nil || !strings.Contains(err.Error(), "exist") {
		t.Errorf("existing output: %v", err)
	}
}
