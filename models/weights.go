package models

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// This file reads weight matrices from a GGUF file as they are stored
// (quantized or not), a block of rows at a time, so that an analysis of
// the parameters themselves (lldiff params) holds about one block of
// float32 rows in memory rather than whole matrices.

// Weights reads the tensors of one GGUF file row by row. It is safe for
// concurrent use (reads go through ReadAt).
type Weights struct {
	File *File
	fh   *os.File
}

// OpenWeights opens the GGUF file at path for reading its tensors.
func OpenWeights(path string) (*Weights, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &Weights{File: f, fh: fh}, nil
}

// Close closes the file; a second Close is harmless.
func (w *Weights) Close() error {
	if w == nil || w.fh == nil {
		return nil
	}
	err := w.fh.Close()
	w.fh = nil
	return err
}

// Shape returns the number of rows and the row length of the named tensor
// in ggml order: a tensor of dims [n0, n1] has n1 rows of n0 values, a
// 1-D tensor one row. Tensors of more than two dimensions (with a
// dimension above the second larger than 1) and types Dequantize does not
// support are errors.
func (w *Weights) Shape(name string) (rows, cols int, err error) {
	t, ok := w.File.Tensor(name)
	if !ok {
		return 0, 0, fmt.Errorf("%s has no tensor %s", w.File.displayPath(), name)
	}
	if !CanDequantize(t.Type) {
		return 0, 0, fmt.Errorf("%s: tensor %s has type %s, which lldiff cannot decode yet", w.File.displayPath(), name, t.Type)
	}
	rows = 1
	for i, d := range t.Dims[1:] {
		if i > 0 && d != 1 {
			return 0, 0, fmt.Errorf("%s: tensor %s has shape %v; a matrix has two dimensions", w.File.displayPath(), name, t.Dims)
		}
		rows *= int(d)
	}
	return rows, int(t.Dims[0]), nil
}

// ReadRows decodes rows r0 .. r0+n−1 of the named tensor into dst, which
// must hold n times the row length, reading only those rows' bytes.
func (w *Weights) ReadRows(dst []float32, name string, r0, n int) error {
	if w.fh == nil {
		return errors.New("models: Weights used after Close")
	}
	rows, cols, err := w.Shape(name)
	if err != nil {
		return err
	}
	if r0 < 0 || n < 0 || r0+n > rows {
		return fmt.Errorf("models: rows %d..%d of %s, which has %d", r0, r0+n-1, name, rows)
	}
	if len(dst) != n*cols {
		panic(fmt.Sprintf("models: ReadRows: dst has %d values for %d rows of %d", len(dst), n, cols))
	}
	t, _ := w.File.Tensor(name)
	rowBytes, ok := t.Type.RowSize(uint64(cols))
	if !ok {
		return fmt.Errorf("%s: tensor %s: a row of %d %s values is not a whole number of blocks", w.File.displayPath(), name, cols, t.Type)
	}
	buf := make([]byte, uint64(n)*rowBytes)
	off := w.File.DataOffset + int64(t.Offset) + int64(r0)*int64(rowBytes)
	if k, err := w.fh.ReadAt(buf, off); k < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return &FormatError{Path: w.File.Path, Problem: fmt.Sprintf("file ends at byte %d inside tensor %q", off+int64(k), name), Fix: fixTruncated}
		}
		return fmt.Errorf("%s: reading tensor %s: %w", w.File.displayPath(), name, err)
	}
	return Dequantize(dst, buf, t.Type)
}

// EachRows calls f with consecutive blocks of at most block rows of the
// named tensor, decoded to float32 (rows × the row length, row-major),
// from the first row to the last; the slice is reused between calls. It
// stops at f's first error and returns it.
func (w *Weights) EachRows(name string, block int, f func(r0 int, rows []float32) error) error {
	rows, cols, err := w.Shape(name)
	if err != nil {
		return err
	}
	block = max(1, min(block, rows))
	buf := make([]float32, block*cols)
	for r0 := 0; r0 < rows; r0 += block {
		n := min(block, rows-r0)
		if err := w.ReadRows(buf[:n*cols], name, r0, n); err != nil {
			return err
		}
		if err := f(r0, buf[:n*cols]); err != nil {
			return err
		}
	}
	return nil
}

// Vector reads a whole tensor of at most max values (a norm weight, a
// bias) as float32.
func (w *Weights) Vector(name string, max int) ([]float32, error) {
	rows, cols, err := w.Shape(name)
	if err != nil {
		return nil, err
	}
	if rows*cols > max {
		return nil, fmt.Errorf("%s: tensor %s has %d values, more than the %d expected", w.File.displayPath(), name, rows*cols, max)
	}
	out := make([]float32, rows*cols)
	return out, w.ReadRows(out, name, 0, rows)
}
