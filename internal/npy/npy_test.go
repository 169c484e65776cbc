package npy

import (
	"bytes"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, shape := range [][]int{{3}, {2, 3}, {1, 64}, {4, 1, 2}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i)*0.5 - 1
		}
		var b bytes.Buffer
		if err := Write(&b, shape, data); err != nil {
			t.Fatal(err)
		}
		if FileSize(shape) != int64(b.Len()) {
			t.Errorf("shape %v: FileSize %d, Write wrote %d bytes", shape, FileSize(shape), b.Len())
		}
		// header + data length is a multiple of 64 before the data
		if (b.Len()-4*n)%64 != 0 {
			t.Errorf("shape %v: header length %d not aligned to 64", shape, b.Len()-4*n)
		}
		gs, gd, err := Read(&b)
		if err != nil {
			t.Fatal(err)
		}
		if len(gs) != len(shape) {
			t.Fatalf("shape %v read back as %v", shape, gs)
		}
		for i := range gs {
			if gs[i] != shape[i] {
				t.Fatalf("shape %v read back as %v", shape, gs)
			}
		}
		for i := range gd {
			if gd[i] != data[i] {
				t.Fatalf("value %d: %v != %v", i, gd[i], data[i])
			}
		}
	}
}

// TestNumpyLoads checks the files with numpy itself when it is installed.
func TestNumpyLoads(t *testing.T) {
	py := NumpyPython()
	if py == "" {
		t.Skip("no python3 with numpy installed (apt-get install python3-numpy)")
	}
	p := filepath.Join(t.TempDir(), "a.npy")
	if err := WriteFile(p, []int{2, 3}, []float32{1, 2, 3, 4, 5, 6.5}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", "import numpy,sys; a=numpy.load(sys.argv[1]); print(a.dtype, a.shape, a[1,2])", p).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy.load failed: %v\n%s", err, out)
	}
	if got := string(bytes.TrimSpace(out)); got != "float32 (2, 3) 6.5" {
		t.Fatalf("numpy read %q", got)
	}
}

// TestWriterMatchesWrite: a file written in pieces by Writer has the bytes
// Write writes for the whole array, and Writer refuses values past the
// shape and reports a short file.
func TestWriterMatchesWrite(t *testing.T) {
	shape := []int{5, 3}
	data := make([]float32, 15)
	for i := range data {
		data[i] = float32(i)*0.37 - 2.5
	}
	data[4] = float32(math.Inf(-1))
	var whole bytes.Buffer
	if err := Write(&whole, shape, data); err != nil {
		t.Fatal(err)
	}
	var parts bytes.Buffer
	w, err := NewWriter(&parts, shape)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range [][2]int{{0, 6}, {6, 6}, {6, 9}, {9, 15}} {
		if err := w.Write(data[cut[0]:cut[1]]); err != nil {
			t.Fatal(err)
		}
		if cut[1] < 15 && w.Done() == nil {
			t.Errorf("Done after %d of 15 values: no error", cut[1])
		}
	}
	if err := w.Done(); err != nil {
		t.Error(err)
	}
	if !bytes.Equal(parts.Bytes(), whole.Bytes()) {
		t.Errorf("streamed file (%d bytes) differs from Write's (%d bytes)", parts.Len(), whole.Len())
	}
	if err := w.Write([]float32{1}); err == nil || !strings.Contains(err.Error(), "past shape") {
		t.Errorf("value past the shape: %v", err)
	}
	if int64(parts.Len()) != FileSize(shape) {
		t.Errorf("%d bytes after a refused write, want %d", parts.Len(), FileSize(shape))
	}
}
