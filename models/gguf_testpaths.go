package models

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables that control where tests find the shared models.
const (
	// SharedModelsEnv, when set, is the directory of the shared model
	// files, instead of a shared/models found above the working directory.
	SharedModelsEnv = "LLDIFF_SHARED_MODELS"
	// SkipSharedEnv set to 1 lets tests skip, instead of fail, when the
	// shared models are missing.
	SkipSharedEnv = "LLDIFF_SKIP_SHARED"
)

// Names of the shared model files, relative to SharedModelsDir (see its
// MANIFEST.md).
const (
	Stories260K        = "stories260K.gguf"
	TinyStories656KF16 = "TinyStories-656K.f16.gguf"
	TinyStories656KQ8  = "TinyStories-656K-Q8_0.gguf"
	VocabLlamaSPM      = "vocab/ggml-vocab-llama-spm.gguf"
	VocabGPT2          = "vocab/ggml-vocab-gpt-2.gguf"
	VocabGPTNeoX       = "vocab/ggml-vocab-gpt-neox.gguf"
)

// SharedModelsDir returns the directory of the shared model files: the
// value of $LLDIFF_SHARED_MODELS if set, else the first shared/models found
// in the working directory or one of its parents.
func SharedModelsDir() (string, error) {
	if d := os.Getenv(SharedModelsEnv); d != "" {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%s=%s is not a directory", SharedModelsEnv, d)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	var tried []string
	for dir := wd; ; {
		c := filepath.Join(dir, "shared", "models")
		if fi, err := os.Stat(c); err == nil && fi.IsDir() {
			return c, nil
		}
		tried = append(tried, c)
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("shared test models not found (looked for %s); set %s to their directory, or %s=1 to skip the tests that need them",
		strings.Join(tried, ", "), SharedModelsEnv, SkipSharedEnv)
}

// SharedModelPath returns the path of a shared model file, such as
// Stories260K, and an error naming the path when it is missing.
func SharedModelPath(name string) (string, error) {
	dir, err := SharedModelsDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, filepath.FromSlash(name))
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("shared model %s is missing (see %s for where to get it)", p, filepath.Join(dir, "MANIFEST.md"))
		}
		return "", fmt.Errorf("shared model: %w", err)
	}
	return p, nil
}

// SkipShared reports whether $LLDIFF_SKIP_SHARED is 1: tests that need a
// missing shared model should then skip instead of fail.
func SkipShared() bool { return os.Getenv(SkipSharedEnv) == "1" }

// CachedSynthetic returns the path of the synthetic model of a preset (see
// SynthPreset) with matrices of type t, with the architecture's shared
// vocabulary (see SynthVocab). It writes the model once into
// $TMPDIR/lldiff-bench and reuses it afterwards: WriteSynthetic is
// deterministic, so a file left by an earlier run, or written meanwhile by
// another process, has the same bytes. Benchmarks use it to avoid writing
// a large model on every run.
func CachedSynthetic(preset string, t GGMLType) (string, error) {
	spec, err := SynthPreset(preset)
	if err != nil {
		return "", err
	}
	spec.Type = t
	cache := filepath.Join(os.TempDir(), "lldiff-bench")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(cache, fmt.Sprintf("%s-%s.gguf", preset, t))
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := WriteSynthetic(p, spec); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return p, nil
}
