package models_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestWeightsRows: rows read a block at a time are the rows of the whole
// tensor decoded at once (ReadTensorFloat32), bit for bit, for F32, F16
// and Q8_0 tensors.
func TestWeightsRows(t *testing.T) {
	for _, c := range []struct{ file, tensor string }{
		{testmodels.Stories260K, "blk.1.ffn_down.weight"},
		{testmodels.TinyStories656KF16, "blk.0.ffn_up.weight"},
		{testmodels.TinyStories656KQ8, "blk.1.attn_output.weight"},
		{testmodels.TinyStories656KQ8, "output_norm.weight"},
	} {
		w, err := models.OpenWeights(testmodels.Path(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		full, err := w.File.ReadTensorFloat32(c.tensor)
		if err != nil {
			t.Fatal(err)
		}
		rows, cols, err := w.Shape(c.tensor)
		if err != nil || rows*cols != len(full) {
			t.Fatalf("%s: shape %d × %d for %d values (%v)", c.tensor, rows, cols, len(full), err)
		}
		var got []float32
		if err := w.EachRows(c.tensor, 7, func(r0 int, blk []float32) error {
			if r0*cols != len(got) {
				t.Fatalf("%s: block at row %d after %d values", c.tensor, r0, len(got))
			}
			got = append(got, blk...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, full) {
			t.Errorf("%s: EachRows differs from ReadTensorFloat32", c.tensor)
		}
		one := make([]float32, cols)
		if err := w.ReadRows(one, c.tensor, rows-1, 1); err != nil || !slices.Equal(one, full[(rows-1)*cols:]) {
			t.Errorf("%s: last row differs (%v)", c.tensor, err)
		}
		if err := w.ReadRows(one, c.tensor, rows, 1); err == nil {
			t.Errorf("%s: row %d of %d read without an error", c.tensor, rows, rows)
		}
		if _, err := w.Vector(c.tensor, len(full)-1); err == nil && rows*cols > 1 {
			t.Errorf("%s: Vector with a smaller limit did not refuse", c.tensor)
		}
		if _, _, err := w.Shape("no.such.tensor"); err == nil || !strings.Contains(err.Error(), "no tensor") {
			t.Errorf("missing tensor: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := w.ReadRows(one, c.tensor, 0, 1); err == nil {
			t.Error("ReadRows after Close: no error")
		}
	}
}
