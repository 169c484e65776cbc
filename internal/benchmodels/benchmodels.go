// Package benchmodels writes the synthetic models that benchmarks use once
// per machine and reuses them, and the broken models several packages'
// tests share (Overflow).
package benchmodels

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// Synthetic returns the path of the synthetic model of a preset (see
// models.SynthPreset) with matrices of type t and the architecture's shipped
// vocabulary. It writes the model once into $TMPDIR/lldiff-bench and reuses
// it afterwards: WriteSynthetic is deterministic, so a file left by an
// earlier run, or written meanwhile by another process, has the same bytes.
func Synthetic(preset string, t models.GGMLType) (string, error) {
	spec, err := models.SynthPreset(preset)
	if err != nil {
		return "", err
	}
	spec.Type = t
	cache := filepath.Join(os.TempDir(), "lldiff-bench")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s", preset, t)
	if spec.VocabSize > 0 {
		// a file written before the preset padded its vocabulary has
		// another size: never reuse it
		name += fmt.Sprintf("-v%d", spec.VocabSize)
	}
	p := filepath.Join(cache, name+".gguf")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if err := models.WriteSynthetic(p, spec); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	return p, nil
}

// Overflow writes into a test's temporary folder the "tiny" synthetic
// model (2 layers, F32) with blk.1.ffn_down.weight set to 3e38 everywhere:
// layer 1's MLP output overflows to ±Inf and everything after it is NaN.
// Broken weights that pass every header check (a matrix's values are not
// validated), for the tests of non-finite activations.
func Overflow(tb testing.TB) string {
	tb.Helper()
	spec, err := models.SynthPreset("tiny")
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "overflow.gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		tb.Fatal(err)
	}
	f, err := models.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	ti, ok := f.Tensor("blk.1.ffn_down.weight")
	if !ok || ti.Type != models.F32 {
		tb.Fatalf("no F32 blk.1.ffn_down.weight in %s", path)
	}
	buf := make([]byte, 4*ti.NumElements())
	for i := 0; i < len(buf); i += 4 {
		binary.LittleEndian.PutUint32(buf[i:], math.Float32bits(3e38))
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt(buf, f.DataOffset+int64(ti.Offset)); err != nil {
		tb.Fatal(err)
	}
	return path
}
