// Package testmodels finds the small model files that ship with lldiff in
// testdata/models (see its MANIFEST.md) for tests, benchmarks and the demo.
//
// The folder is the module root's testdata/models, found by walking up from
// the working directory to the first go.mod (so a test never looks outside
// its checkout), or the folder named by $LLDIFF_SHARED_MODELS. Every file is
// checked against the sha256 in MANIFEST.md before a test uses it.
package testmodels

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Environment variables that control where tests find the models.
const (
	// DirEnv, when set, is the folder of the model files instead of the
	// checkout's testdata/models.
	DirEnv = "LLDIFF_SHARED_MODELS"
	// SkipEnv set to 1 lets tests skip, instead of fail, when a model is
	// missing.
	SkipEnv = "LLDIFF_SKIP_SHARED"
)

// Names of the model files, relative to Dir.
const (
	Stories260K        = "stories260K.gguf"
	TinyStories656KF16 = "TinyStories-656K.f16.gguf"
	TinyStories656KQ8  = "TinyStories-656K-Q8_0.gguf"
	VocabLlamaSPM      = "vocab/ggml-vocab-llama-spm.gguf"
	VocabGPT2          = "vocab/ggml-vocab-gpt-2.gguf"
	VocabGPTNeoX       = "vocab/ggml-vocab-gpt-neox.gguf"
)

// Names lists every shipped model file.
var Names = []string{Stories260K, TinyStories656KF16, TinyStories656KQ8, VocabLlamaSPM, VocabGPT2, VocabGPTNeoX}

// ModuleRoot returns the first directory at or above start that holds a
// go.mod file. The walk stops there, so it never leaves the checkout.
func ModuleRoot(start string) (string, error) {
	for dir := start; ; {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod at or above %s: run the tests from inside the lldiff checkout, or set %s", start, DirEnv)
		}
		dir = parent
	}
}

// Dir returns the folder of the model files: $LLDIFF_SHARED_MODELS if set,
// else testdata/models in the module root above the working directory.
func Dir() (string, error) {
	if d := os.Getenv(DirEnv); d != "" {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%s=%s is not a directory: unset it to use the models in the checkout's testdata/models", DirEnv, d)
		}
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, "testdata", "models")
	if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s is missing: the checkout is incomplete (git checkout -- testdata/models), or set %s to a folder with the models of testdata/models/MANIFEST.md", d, DirEnv)
	}
	return d, nil
}

// Lookup returns the path of a model file, such as Stories260K, after
// checking that it exists and that its sha256 is the one MANIFEST.md (in the
// checkout) records. The error names the path and the fix.
func Lookup(name string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, filepath.FromSlash(name))
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("test model %s is missing (testdata/models/MANIFEST.md says where it comes from)", p)
		}
		return "", fmt.Errorf("test model: %w", err)
	}
	if err := checkSum(name, p); err != nil {
		return "", err
	}
	return p, nil
}

// Path returns the path of a model file for a test or benchmark and fails
// it, naming the path, when the file is missing or corrupted; with
// LLDIFF_SKIP_SHARED=1 it skips instead.
func Path(tb testing.TB, name string) string {
	tb.Helper()
	p, err := Lookup(name)
	if err != nil {
		if os.Getenv(SkipEnv) == "1" {
			tb.Skipf("%v (skipped: %s=1)", err, SkipEnv)
		}
		tb.Fatal(err)
	}
	return p
}

var (
	sumsOnce sync.Once
	sums     map[string]string
	sumsErr  error
	checked  sync.Map // path → error (nil when the sum matched)
)

// Sums returns the sha256 of each file as MANIFEST.md in the checkout's
// testdata/models records it.
func Sums() (map[string]string, error) {
	sumsOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			sumsErr = err
			return
		}
		root, err := ModuleRoot(wd)
		if err != nil {
			sumsErr = err
			return
		}
		sums, sumsErr = parseManifest(filepath.Join(root, "testdata", "models", "MANIFEST.md"))
	})
	return sums, sumsErr
}

// parseManifest reads the "hash  path" lines of a MANIFEST.md.
func parseManifest(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model manifest: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && len(fields[0]) == 64 {
			if _, err := hex.DecodeString(fields[0]); err == nil {
				out[fields[1]] = fields[0]
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("model manifest %s lists no sha256 lines", path)
	}
	return out, nil
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkSum compares a file with the manifest, once per path and process.
func checkSum(name, path string) error {
	if v, ok := checked.Load(path); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	err := func() error {
		sums, err := Sums()
		if err != nil {
			return err
		}
		want, ok := sums[name]
		if !ok {
			return fmt.Errorf("testdata/models/MANIFEST.md has no sha256 for %s", name)
		}
		got, err := FileSHA256(path)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("test model %s is corrupted: sha256 %s, MANIFEST.md says %s (restore it: git checkout -- testdata/models; a Git LFS or partial clone may have left a pointer)", path, got, want)
		}
		return nil
	}()
	if err == nil {
		checked.Store(path, nil)
	} else {
		checked.Store(path, err)
	}
	return err
}
