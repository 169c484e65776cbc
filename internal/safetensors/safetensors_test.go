package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func sample() ([]Data, []float32, []int64) {
	f := []float32{1.5, -2, 3.25, 0, 1e-30, 7}
	i := []int64{-1, 1 << 40, 3}
	return []Data{
		{Spec{"x", F32, []int64{2, 3}}, Float32Bytes(nil, f)},
		{Spec{"odd", U8, []int64{3}}, []byte{1, 2, 3}},
		{Spec{"idx", I64, []int64{3}}, Int64Bytes(nil, i)},
		{Spec{"empty", F32, []int64{0, 4}}, nil},
	}, f, i
}

// TestHeaderBytes checks the header against the format's description byte
// by byte, independently of the reader: the size field, JSON that starts
// with '{', space padding to a multiple of 8, offsets that match the
// shapes and cover the data, each tensor aligned to its element size.
func TestHeaderBytes(t *testing.T) {
	ts, _, _ := sample()
	b, err := Encode(ts, map[string]string{"model_sha256": "abc", "note": "q\"uote"})
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n%8 != 0 || b[8] != '{' {
		t.Fatalf("header size %d (want a multiple of 8), first byte %q", n, b[8])
	}
	js := b[8 : 8+n]
	trimmed := bytes.TrimRight(js, " ")
	if trimmed[len(trimmed)-1] != '}' {
		t.Fatalf("header does not end with '}' then spaces: %q", js)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		t.Fatal(err)
	}
	var meta map[string]string
	json.Unmarshal(doc["__metadata__"], &meta)
	if meta["note"] != `q"uote` || meta["model_sha256"] != "abc" {
		t.Errorf("metadata %v", meta)
	}
	dataLen := uint64(len(b)) - 8 - n
	type ent struct {
		DType   string   `json:"dtype"`
		Shape   []int64  `json:"shape"`
		Offsets []uint64 `json:"data_offsets"`
	}
	covered := uint64(0)
	for _, want := range ts {
		var e ent
		if err := json.Unmarshal(doc[want.Name], &e); err != nil {
			t.Fatalf("%s: %v", want.Name, err)
		}
		if e.DType != string(want.DType) || !slices.Equal(e.Shape, want.Shape) {
			t.Errorf("%s: %s %v, want %s %v", want.Name, e.DType, e.Shape, want.DType, want.Shape)
		}
		if e.Offsets[1]-e.Offsets[0] != uint64(len(want.Bytes)) || e.Offsets[1] > dataLen {
			t.Errorf("%s: offsets %v for %d bytes of %d", want.Name, e.Offsets, len(want.Bytes), dataLen)
		}
		if (8+n+e.Offsets[0])%uint64(want.DType.Size()) != 0 {
			t.Errorf("%s starts at file offset %d, not aligned to %d", want.Name, 8+n+e.Offsets[0], want.DType.Size())
		}
		if !bytes.Equal(b[8+n+e.Offsets[0]:8+n+e.Offsets[1]], want.Bytes) {
			t.Errorf("%s: bytes differ", want.Name)
		}
		covered += e.Offsets[1] - e.Offsets[0]
	}
	if covered != dataLen || len(doc) != len(ts)+1 {
		t.Errorf("tensors cover %d of %d data bytes; %d header entries", covered, dataLen, len(doc))
	}
}

func TestRoundTripAndStream(t *testing.T) {
	ts, f, i := sample()
	b, err := Encode(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.safetensors")
	os.WriteFile(p, b, 0o644)
	check := func(p string) {
		t.Helper()
		fh, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		gf, shape, err := fh.Float32("x")
		if err != nil || !slices.Equal(gf, f) || !slices.Equal(shape, []int64{2, 3}) {
			t.Errorf("x = %v %v %v", gf, shape, err)
		}
		gi, _, err := fh.Int64("idx")
		if err != nil || !slices.Equal(gi, i) {
			t.Errorf("idx = %v %v", gi, err)
		}
		if _, _, err := fh.Float64("x"); err == nil || !strings.Contains(err.Error(), "is F32") {
			t.Errorf("reading F32 as F64: %v", err)
		}
		e, _, err := fh.Float32("empty")
		if err != nil || len(e) != 0 {
			t.Errorf("empty = %v %v", e, err)
		}
	}
	check(p)
	// the same file streamed: header first, then the tensors' bytes in
	// pieces, out of order
	specs := make([]Spec, len(ts))
	for k, d := range ts {
		specs[k] = d.Spec
	}
	h, hdr, err := Plan(specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2 := filepath.Join(t.TempDir(), "b.safetensors")
	fh, _ := os.Create(p2)
	w, err := NewWriter(fh, h, hdr)
	if err != nil {
		t.Fatal(err)
	}
	for k := len(ts) - 1; k >= 0; k-- {
		d := ts[k]
		half := len(d.Bytes) / 2
		if err := w.WriteAt(d.Name, int64(half), d.Bytes[half:]); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteAt(d.Name, 0, d.Bytes[:half]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteAt("x", 20, make([]byte, 8)); err == nil {
		t.Error("writing past the end of a tensor succeeded")
	}
	fh.Close()
	got, _ := os.ReadFile(p2)
	if !bytes.Equal(got, b) {
		t.Error("streamed file differs from the encoded one")
	}
	check(p2)
}

func TestReadErrors(t *testing.T) {
	ts, _, _ := sample()
	good, _ := Encode(ts, nil)
	n := binary.LittleEndian.Uint64(good[:8])
	withHeader := func(js string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
		return append(b, js...)
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:5], "too short"},
		{"truncated data", good[:len(good)-1], "truncated"},
		{"extra bytes", append(slices.Clone(good), 0), "no tensor owns"},
		{"huge size", binary.LittleEndian.AppendUint64(nil, 1<<40), "larger than"},
		{"size past end", append(binary.LittleEndian.AppendUint64(nil, n+100), good[8:]...), "runs past"},
		{"not json", withHeader("[1]"), "start with '{'"},
		{"duplicate", withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`), "twice"},
		{"bad dtype", withHeader(`{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,1]}}`), "unknown dtype"},
		{"shape mismatch", append(withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`), 0, 0, 0, 0), "does not fill"},
		{"hole", append(withHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 0, 0), "hole"},
		{"overlap", append(withHeader(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 0, 0), "overlap"},
		{"garbage after", withHeader(`{} x`), "other than spaces"},
		{"missing field", withHeader(`{"a":{"dtype":"U8","shape":[0]}}`), "lacks"},
		{"negative dim", withHeader(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`), "does not fill"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadHeader(bytes.NewReader(c.b), int64(len(c.b)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
	if _, _, err := Plan([]Spec{{"a", F32, []int64{1}}, {"a", F32, []int64{1}}}, nil); err == nil {
		t.Error("Plan accepted a duplicate name")
	}
	if _, _, err := Plan([]Spec{{"a", F32, []int64{1 << 62, 1 << 62}}}, nil); err == nil {
		t.Error("Plan accepted an overflowing shape")
	}
}

// FuzzReadHeader feeds arbitrary bytes to the reader: it must return an
// error or a header whose tensors lie inside the file, back to back,
// each of the size its shape and dtype give.
func FuzzReadHeader(f *testing.F) {
	ts, _, _ := sample()
	good, _ := Encode(ts, map[string]string{"k": "v"})
	f.Add(good)
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		at := int64(0)
		for _, x := range h.Tensors {
			n, ok := byteSize(x.Shape, x.DType)
			if !ok || x.Begin != at || x.End-x.Begin != n || h.DataStart+x.End > int64(len(b)) {
				t.Fatalf("accepted a bad tensor %+v (data at %d, file %d bytes)", x, h.DataStart, len(b))
			}
			at = x.End
		}
		if h.Size() != int64(len(b)) {
			t.Fatalf("header covers %d bytes of %d", h.Size(), len(b))
		}
	})
}

// pythonNumpy returns a python3 that imports numpy, or skips.
func pythonNumpy(t *testing.T) string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import numpy").Run() == nil {
			return py
		}
	}
	t.Skip("no python3 with numpy")
	return ""
}

// TestNumpyReads loads a file the way numpy users do without the
// safetensors package: the header parsed with json, each tensor viewed in
// place with numpy.memmap at its offset (which needs the alignment the
// writer guarantees), and compares the values. With the safetensors
// package installed it also checks safetensors.numpy.load_file.
func TestNumpyReads(t *testing.T) {
	py := pythonNumpy(t)
	ts, f, i := sample()
	b, _ := Encode(ts, map[string]string{"a": "b"})
	p := filepath.Join(t.TempDir(), "a.safetensors")
	os.WriteFile(p, b, 0o644)
	script := `
import json, struct, sys
import numpy as np
p = sys.argv[1]
with open(p, "rb") as fh:
    n = struct.unpack("<Q", fh.read(8))[0]
    hdr = json.loads(fh.read(n))
dt = {"F32": "<f4", "I64": "<i8", "U8": "u1"}
out = {}
for name, e in hdr.items():
    if name == "__metadata__":
        continue
    b0, b1 = e["data_offsets"]
    off = 8 + n + b0
    assert off % np.dtype(dt[e["dtype"]]).itemsize == 0, name
    count = int(np.prod(e["shape"]))
    a = np.memmap(p, dtype=dt[e["dtype"]], mode="r", offset=off, shape=(count,)) if count else np.zeros(0)
    out[name] = np.asarray(a).reshape(e["shape"]).tolist()
try:
    from safetensors.numpy import load_file
    d = load_file(p)
    assert d["x"].tolist() == out["x"]
except ImportError:
    pass
print(json.dumps(out))
`
	got, err := exec.Command(py, "-c", script, p).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	var out struct {
		X   [][]float32 `json:"x"`
		Idx []int64     `json:"idx"`
		Odd []byte      `json:"-"`
	}
	if err := json.Unmarshal(got, &out); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if !slices.Equal(slices.Concat(out.X...), f) || !slices.Equal(out.Idx, i) {
		t.Errorf("numpy read x %v idx %v, want %v %v", out.X, out.Idx, f, i)
	}
}
