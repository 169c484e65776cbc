package models

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSharedModelsDir(t *testing.T) {
	// From the package directory the walk finds the project's shared models.
	t.Setenv(SharedModelsEnv, "")
	dir, err := SharedModelsDir()
	if err != nil {
		if SkipShared() {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, Stories260K)); err != nil {
		t.Errorf("SharedModelsDir() = %s, which has no %s", dir, Stories260K)
	}

	// The environment variable wins.
	alt := t.TempDir()
	t.Setenv(SharedModelsEnv, alt)
	if got, err := SharedModelsDir(); err != nil || got != alt {
		t.Errorf("with %s=%s: %q, %v", SharedModelsEnv, alt, got, err)
	}
	_, err = SharedModelPath(Stories260K)
	if err == nil || !containsAll(err.Error(), filepath.Join(alt, Stories260K), "MANIFEST.md") {
		t.Errorf("SharedModelPath in an empty directory = %v, want an error naming the path", err)
	}
	t.Setenv(SharedModelsEnv, filepath.Join(alt, "missing"))
	if _, err := SharedModelsDir(); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("with a missing directory: %v", err)
	}

	// Without it, a directory with no shared/models above it fails, naming
	// where it looked.
	t.Setenv(SharedModelsEnv, "")
	empty := t.TempDir()
	t.Chdir(empty)
	_, err = SharedModelsDir()
	if err == nil || !containsAll(err.Error(), filepath.Join(empty, "shared", "models"), SharedModelsEnv, SkipSharedEnv) {
		t.Errorf("from %s: %v", empty, err)
	}
	// A shared/models in a parent is found.
	nested := filepath.Join(empty, "a", "b")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(empty, "shared", "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(nested)
	if got, err := SharedModelsDir(); err != nil || got != filepath.Join(empty, "shared", "models") {
		t.Errorf("from %s: %q, %v", nested, got, err)
	}
}

func TestCachedSynthetic(t *testing.T) {
	sharedModel(t, VocabLlamaSPM) // the preset's vocabulary must exist
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	p, err := CachedSynthetic("tiny", Q8_0)
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
	spec, err := SynthPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	spec.Type = Q8_0
	direct := filepath.Join(t.TempDir(), "direct.gguf")
	if err := WriteSynthetic(direct, spec); err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(direct); !bytes.Equal(got, want) {
		t.Errorf("cached file (%d bytes) differs from the preset written directly (%d bytes)", len(got), len(want))
	}
	// A second call reuses the file instead of writing it again.
	if err := os.WriteFile(p, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p2, err := CachedSynthetic("tiny", Q8_0); err != nil || p2 != p {
		t.Fatalf("second call: %q, %v", p2, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "kept" {
		t.Error("second call rewrote the cached file")
	}
	if _, err := CachedSynthetic("no-such-preset", F32); err == nil || !strings.Contains(err.Error(), "no-such-preset") {
		t.Errorf("unknown preset: %v", err)
	}
}
