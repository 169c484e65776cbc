package benchmodels

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

func TestSynthetic(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	p, err := Synthetic("tiny", models.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(tmp, "lldiff-bench", "tiny-Q8_0.gguf"); p != want {
		t.Errorf("path %s, want %s", p, want)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The same bytes as the preset written directly.
	spec, err := models.SynthPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	spec.Type = models.Q8_0
	direct := filepath.Join(t.TempDir(), "direct.gguf")
	if err := models.WriteSynthetic(direct, spec); err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(direct); !bytes.Equal(got, want) {
		t.Errorf("cached file (%d bytes) differs from the preset written directly (%d bytes)", len(got), len(want))
	}
	// A second call reuses the file instead of writing it again.
	if err := os.WriteFile(p, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p2, err := Synthetic("tiny", models.Q8_0); err != nil || p2 != p {
		t.Fatalf("second call: %q, %v", p2, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "kept" {
		t.Error("second call rewrote the cached file")
	}
	if _, err := Synthetic("no-such-preset", models.F32); err == nil || !strings.Contains(err.Error(), "no-such-preset") {
		t.Errorf("unknown preset: %v", err)
	}
}
