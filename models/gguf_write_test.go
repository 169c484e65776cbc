package models

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// allKVs has one key of every value type, including empty arrays.
var allKVs = []KV{
	{"general.architecture", "llama"},
	{"u8", uint8(200)},
	{"i8", int8(-100)},
	{"u16", uint16(60000)},
	{"i16", int16(-30000)},
	{"u32", uint32(4000000000)},
	{"i32", int32(-2000000000)},
	{"u64", uint64(1) << 63},
	{"i64", int64(-1) << 62},
	{"f32", float32(-1.5e-7)},
	{"f64", math.Pi},
	{"bool.true", true},
	{"bool.false", false},
	{"str", "héllo ▁world\x00"},
	{"str.empty", ""},
	{"a.u8", []uint8{0, 1, 255}},
	{"a.i8", []int8{-128, 0, 127}},
	{"a.u16", []uint16{1, 65535}},
	{"a.i16", []int16{-32768, 32767}},
	{"a.u32", []uint32{7}},
	{"a.i32", []int32{-1, 2, -3}},
	{"a.u64", []uint64{math.MaxUint64}},
	{"a.i64", []int64{math.MinInt64}},
	{"a.f32", []float32{float32(math.Inf(-1)), 0.25}},
	{"a.f64", []float64{-0.0, 1e300}},
	{"a.bool", []bool{true, false, true}},
	{"a.str", []string{"", "a", strings.Repeat("x", 100000)}},
	{"a.empty", []string{}},
	{"a.empty.f32", []float32{}},
}

func TestWriterRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 64, 1} {
		t.Run(fmt.Sprint("align", align), func(t *testing.T) {
			var w Writer
			kvs := append([]KV(nil), allKVs...)
			if align != 0 {
				kvs = append(kvs, KV{"general.alignment", align})
			}
			for _, kv := range kvs {
				if err := w.AddKV(kv.Key, kv.Value); err != nil {
					t.Fatal(err)
				}
			}
			type tensor struct {
				name string
				typ  GGMLType
				dims []uint64
				data []byte
			}
			var tensors []tensor
			for i, spec := range []struct {
				typ  GGMLType
				dims []uint64
			}{
				{F32, []uint64{3}}, // 12 bytes: padding follows
				{F16, []uint64{5, 3}},
				{Q8_0, []uint64{64, 2, 2}},
				{Q4_0, []uint64{32, 1, 1, 3}},
				{Q6_K, []uint64{256, 1}},
				{I8, []uint64{7}},
			} {
				n, _ := spec.typ.RowSize(spec.dims[0])
				for _, d := range spec.dims[1:] {
					n *= d
				}
				data := make([]byte, n)
				for j := range data {
					data[j] = byte(i*31 + j*7)
				}
				tensors = append(tensors, tensor{"t" + spec.typ.String(), spec.typ, spec.dims, data})
			}
			for i, tt := range tensors {
				var err error
				if i%2 == 0 {
					err = w.AddTensor(tt.name, tt.typ, tt.dims, tt.data)
				} else {
					data := tt.data
					err = w.AddTensorFunc(tt.name, tt.typ, tt.dims, func(out io.Writer) error {
						// Write in uneven pieces.
						data := data
						for len(data) > 0 {
							k := min(len(data), 5)
							if _, err := out.Write(data[:k]); err != nil {
								return err
							}
							data = data[k:]
						}
						return nil
					})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			p := filepath.Join(t.TempDir(), "rt.gguf")
			if err := w.WriteFile(p); err != nil {
				t.Fatal(err)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.KVs, kvs) {
				t.Errorf("KVs differ:\n got %v\nwant %v", f.KVs, kvs)
			}
			wantAlign := uint64(align)
			if align == 0 {
				wantAlign = 32
			}
			if f.Version != 3 || f.Alignment != wantAlign || f.FileSize != w.Size() {
				t.Errorf("Version %d, Alignment %d, FileSize %d (Writer.Size %d)", f.Version, f.Alignment, f.FileSize, w.Size())
			}
			if err := f.checkLayout(); err != nil {
				t.Error(err)
			}
			if len(f.Tensors) != len(tensors) {
				t.Fatalf("%d tensors, want %d", len(f.Tensors), len(tensors))
			}
			for i, tt := range tensors {
				ti := f.Tensors[i]
				if ti.Name != tt.name || ti.Type != tt.typ || !equalDims(ti.Dims, tt.dims) || ti.Size != uint64(len(tt.data)) {
					t.Errorf("tensor %d = %+v, want %s %s %v", i, ti, tt.name, tt.typ, tt.dims)
				}
				got, err := f.ReadTensor(tt.name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.data) {
					t.Errorf("tensor %s data differs", tt.name)
				}
			}
			// The file on disk is exactly what WriteTo produces, and the
			// data section is padded to the alignment.
			var buf bytes.Buffer
			n, err := w.WriteTo(&buf)
			if err != nil || n != int64(buf.Len()) {
				t.Fatalf("WriteTo = %d, %v (wrote %d)", n, err, buf.Len())
			}
			disk, _ := os.ReadFile(p)
			if !bytes.Equal(disk, buf.Bytes()) {
				t.Error("WriteFile and WriteTo differ")
			}
			if uint64(f.FileSize-f.DataOffset)%wantAlign != 0 {
				t.Errorf("data section of %d bytes is not padded to %d", f.FileSize-f.DataOffset, wantAlign)
			}
		})
	}
}

func TestWriterNoTensors(t *testing.T) {
	var w Writer
	if err := w.AddKV("general.architecture", "llama"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	// Header 24 bytes, key 8+20, type 4, value 8+5: no padding without tensors.
	if buf.Len() != 24+28+4+13 || f.DataOffset != int64(buf.Len()) || len(f.Tensors) != 0 || w.Size() != int64(buf.Len()) {
		t.Errorf("%d bytes, DataOffset %d", buf.Len(), f.DataOffset)
	}
}

func TestWriterOverwrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.gguf")
	write := func(name string, overwrite bool) error {
		w := Writer{Overwrite: overwrite}
		if err := w.AddKV("general.name", name); err != nil {
			t.Fatal(err)
		}
		return w.WriteFile(p)
	}
	name := func() string {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := f.String("general.name")
		return s
	}
	if err := write("first", false); err != nil {
		t.Fatal(err)
	}
	err := write("second", false)
	if !errors.Is(err, fs.ErrExist) || !containsAll(err.Error(), p, "already exists", "--force") {
		t.Errorf("second write = %v, want an fs.ErrExist error that says to pass --force", err)
	}
	if got := name(); got != "first" {
		t.Errorf("after refused overwrite, name = %q", got)
	}
	if err := write("third", true); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "third" {
		t.Errorf("after overwrite, name = %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only m.gguf (no temporary files)", len(entries))
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
}

func TestWriterErrors(t *testing.T) {
	var w Writer
	if err := w.AddKV("k", uint32(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("t", F32, []uint64{2}, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	kvErrs := []struct {
		key  string
		v    any
		want string
	}{
		{"", uint32(1), "empty key"},
		{"k", uint32(2), "added twice"},
		{"x", 1, "Go type int"},
		{"x", []any{uint8(1)}, "Go type []interface {}"},
		{"x", nil, "Go type <nil>"},
		{"general.alignment", uint64(32), "must be a uint32 power of two"},
		{"general.alignment", uint32(24), "must be a uint32 power of two"},
	}
	for _, tt := range kvErrs {
		if err := w.AddKV(tt.key, tt.v); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AddKV(%q, %T) = %v, want %q", tt.key, tt.v, err, tt.want)
		}
	}
	tensorErrs := []struct {
		name string
		typ  GGMLType
		dims []uint64
		n    int
		want string
	}{
		{"", F32, []uint64{1}, 4, "empty tensor name"},
		{"t", F32, []uint64{1}, 4, "added twice"},
		{strings.Repeat("x", 64), F32, []uint64{1}, 4, "longer than 63"},
		{"u", 4, []uint64{1}, 4, "unknown type"},
		{"u", F32, nil, 0, "0 dimensions"},
		{"u", F32, []uint64{1, 1, 1, 1, 1}, 4, "5 dimensions"},
		{"u", F32, []uint64{0}, 0, "bad dimensions"},
		{"u", F32, []uint64{1 << 32, 1 << 32}, 0, "bad dimensions"},
		{"u", Q8_0, []uint64{48}, 51, "not a multiple of the block size 32"},
		{"u", F16, []uint64{4}, 9, "needs 8 bytes, have 9"},
	}
	for _, tt := range tensorErrs {
		if err := w.AddTensor(tt.name, tt.typ, tt.dims, make([]byte, tt.n)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AddTensor(%q, %s, %v) = %v, want %q", tt.name, tt.typ, tt.dims, err, tt.want)
		}
	}
	if err := w.AddTensorFunc("u", F32, []uint64{1}, nil); err == nil {
		t.Error("AddTensorFunc with nil fill: no error")
	}
}

func TestWriterBadFill(t *testing.T) {
	tests := []struct {
		name string
		fill func(w io.Writer) error
		want string
	}{
		{"short", func(w io.Writer) error { _, err := w.Write(make([]byte, 7)); return err }, "wrote 7 bytes, want 8"},
		{"long", func(w io.Writer) error { _, err := w.Write(make([]byte, 9)); return err }, "more than its 8 bytes"},
		{"error", func(w io.Writer) error { return errors.New("generator broke") }, "generator broke"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var w Writer
			if err := w.AddTensorFunc("t", F32, []uint64{2}, tt.fill); err != nil {
				t.Fatal(err)
			}
			err := w.WriteFile(filepath.Join(dir, "m.gguf"))
			if err == nil || !containsAll(err.Error(), tt.want, `"t"`) {
				t.Errorf("WriteFile = %v, want %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("failed write left %d files behind", len(entries))
			}
		})
	}
	var w Writer
	if err := w.WriteFile(filepath.Join(t.TempDir(), "no", "such", "dir", "m.gguf")); err == nil {
		t.Error("WriteFile into a missing directory: no error")
	}
}
