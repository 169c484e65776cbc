// Package safetensors writes and reads files in Hugging Face's safetensors
// format (https://github.com/huggingface/safetensors, "Format"):
//
//	8 bytes      N, the header size, little-endian uint64
//	N bytes      a JSON object: for each tensor its name →
//	             {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]},
//	             and optionally "__metadata__": {string: string};
//	             it starts with '{' and may end with spaces (0x20)
//	rest         the tensors' bytes, little-endian, C order; offsets are
//	             relative to the start of this part, and the tensors cover
//	             it without holes or overlaps
//
// The writer pads the header with spaces so that the data start at a
// multiple of 8 bytes, and lays the tensors out largest element first, so
// that every tensor starts at a multiple of its element size and a reader
// can memory-map the file and view each tensor in place (numpy.memmap,
// torch, safetensors.safe_open). It writes a layout planned up front,
// tensor bytes then go in at their offsets in any order (WriteAt): a file
// can be streamed without holding its tensors in memory.
//
// The reader checks what the reference implementation checks: a header
// size within the file and at most 100 MB, JSON without duplicate names,
// known dtypes, byte ranges that match the shapes and cover the data
// exactly.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"sort"
	"strconv"
)

// DType is a tensor's element type, as the format spells it.
type DType string

// The element types of the format.
const (
	Bool   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
)

// Size returns the bytes per element, 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case Bool, U8, I8, F8E5M2, F8E4M3:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// MaxHeader is the largest header read (the reference implementation's
// limit): a larger size field is a damaged file, not a reason to allocate.
const MaxHeader = 100_000_000

// Tensor describes one tensor of a file. Begin and End are byte offsets
// relative to the start of the data.
type Tensor struct {
	Name       string
	DType      DType
	Shape      []int64
	Begin, End int64
}

// Elements returns the number of elements of the shape.
func (t Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Header is the parsed header of a file.
type Header struct {
	// Tensors in the order of their data.
	Tensors  []Tensor
	Metadata map[string]string
	// DataStart is the file offset of the data: 8 + the header size.
	DataStart int64
}

// Tensor returns the tensor called name.
func (h *Header) Tensor(name string) (Tensor, bool) {
	for _, t := range h.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Size returns the size of the whole file.
func (h *Header) Size() int64 {
	if len(h.Tensors) == 0 {
		return h.DataStart
	}
	return h.DataStart + h.Tensors[len(h.Tensors)-1].End
}

// Spec is a tensor to lay out: its name, type and shape.
type Spec struct {
	Name  string
	DType DType
	Shape []int64
}

// Plan lays out tensors and metadata as a file: the tensors sorted by
// element size, largest first, then in the order given (stable), so that
// each starts at a multiple of its element size; the header padded to a
// multiple of 8. It fails on a duplicate or empty name, the reserved name
// __metadata__, an unknown dtype, a negative dimension or a size that
// overflows.
func Plan(specs []Spec, metadata map[string]string) (*Header, []byte, error) {
	h := &Header{Metadata: metadata}
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return specs[order[i]].DType.Size() > specs[order[j]].DType.Size() })
	seen := map[string]bool{}
	var off int64
	for _, i := range order {
		s := specs[i]
		switch {
		case s.Name == "" || s.Name == "__metadata__":
			return nil, nil, fmt.Errorf("safetensors: tensor name %q is not allowed", s.Name)
		case seen[s.Name]:
			return nil, nil, fmt.Errorf("safetensors: two tensors are named %q", s.Name)
		case s.DType.Size() == 0:
			return nil, nil, fmt.Errorf("safetensors: %s: unknown dtype %q", s.Name, s.DType)
		}
		seen[s.Name] = true
		n, ok := byteSize(s.Shape, s.DType)
		if !ok || off+n < off {
			return nil, nil, fmt.Errorf("safetensors: %s: shape %v is negative or too large", s.Name, s.Shape)
		}
		h.Tensors = append(h.Tensors, Tensor{Name: s.Name, DType: s.DType, Shape: slices.Clone(s.Shape), Begin: off, End: off + n})
		off += n
	}
	hdr, err := encodeHeader(h)
	if err != nil {
		return nil, nil, err
	}
	h.DataStart = int64(len(hdr))
	return h, hdr, nil
}

// byteSize returns the bytes of a tensor of shape and dtype, and false on
// a negative dimension or an overflow.
func byteSize(shape []int64, d DType) (int64, bool) {
	n := uint64(d.Size())
	for _, x := range shape {
		if x < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(n, uint64(x))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return int64(n), true
}

// encodeHeader returns the 8-byte size and the JSON header, padded with
// spaces to a multiple of 8 bytes.
func encodeHeader(h *Header) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	if len(h.Metadata) > 0 {
		sep()
		b.WriteString(`"__metadata__":`)
		keys := make([]string, 0, len(h.Metadata))
		for k := range h.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(h.Metadata[k])
			b.Write(kb)
			b.WriteByte(':')
			b.Write(vb)
		}
		b.WriteByte('}')
	}
	for _, t := range h.Tensors {
		sep()
		nb, err := json.Marshal(t.Name)
		if err != nil {
			return nil, err
		}
		b.Write(nb)
		b.WriteString(`:{"dtype":"`)
		b.WriteString(string(t.DType))
		b.WriteString(`","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(t.Begin, 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(t.End, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeader {
		return nil, fmt.Errorf("safetensors: the header would be %d bytes, more than readers accept (%d): write fewer tensors or less metadata per file", b.Len(), MaxHeader)
	}
	out := make([]byte, 8, 8+b.Len())
	binary.LittleEndian.PutUint64(out, uint64(b.Len()))
	return append(out, b.Bytes()...), nil
}

// Writer writes the tensors of a planned file at their offsets.
type Writer struct {
	w io.WriterAt
	h *Header
}

// NewWriter writes the header of the plan at offset 0 of w and returns a
// Writer for the tensor bytes.
func NewWriter(w io.WriterAt, h *Header, header []byte) (*Writer, error) {
	if _, err := w.WriteAt(header, 0); err != nil {
		return nil, err
	}
	return &Writer{w: w, h: h}, nil
}

// WriteAt writes p into tensor name, starting at byte off of the tensor.
// It fails when the bytes would run past the tensor.
func (w *Writer) WriteAt(name string, off int64, p []byte) error {
	t, ok := w.h.Tensor(name)
	if !ok {
		return fmt.Errorf("safetensors: no tensor %q in the plan", name)
	}
	if off < 0 || off+int64(len(p)) > t.End-t.Begin {
		return fmt.Errorf("safetensors: writing bytes %d..%d of %s, which has %d", off, off+int64(len(p)), name, t.End-t.Begin)
	}
	_, err := w.w.WriteAt(p, w.h.DataStart+t.Begin+off)
	return err
}

// Data is a tensor with its bytes, for WriteFile.
type Data struct {
	Spec
	Bytes []byte
}

// Encode returns a whole file holding the tensors and metadata.
func Encode(tensors []Data, metadata map[string]string) ([]byte, error) {
	specs := make([]Spec, len(tensors))
	for i, t := range tensors {
		specs[i] = t.Spec
	}
	h, hdr, err := Plan(specs, metadata)
	if err != nil {
		return nil, err
	}
	out := make([]byte, h.Size())
	copy(out, hdr)
	for _, t := range tensors {
		pt, _ := h.Tensor(t.Name)
		if int64(len(t.Bytes)) != pt.End-pt.Begin {
			return nil, fmt.Errorf("safetensors: %s: shape %v %s needs %d bytes, got %d", t.Name, t.Shape, t.DType, pt.End-pt.Begin, len(t.Bytes))
		}
		copy(out[h.DataStart+pt.Begin:], t.Bytes)
	}
	return out, nil
}

// ReadHeader reads and checks the header of a file of the given size.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	var nb [8]byte
	if size < 8 {
		return nil, fmt.Errorf("safetensors: %d bytes: too short for a header size", size)
	}
	if _, err := r.ReadAt(nb[:], 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(nb[:])
	switch {
	case n > MaxHeader:
		return nil, fmt.Errorf("safetensors: header size %d is larger than %d: not a safetensors file, or a damaged one", n, MaxHeader)
	case int64(n) > size-8:
		return nil, fmt.Errorf("safetensors: header size %d runs past the end of the file (%d bytes): the file is truncated", n, size)
	case n < 2:
		return nil, fmt.Errorf("safetensors: header size %d is too small for a JSON object", n)
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, 8); err != nil {
		return nil, err
	}
	h, err := parseHeader(buf)
	if err != nil {
		return nil, err
	}
	h.DataStart = 8 + int64(n)
	if want := size - h.DataStart; (len(h.Tensors) == 0 && want != 0) || (len(h.Tensors) > 0 && h.Tensors[len(h.Tensors)-1].End != want) {
		end := int64(0)
		if len(h.Tensors) > 0 {
			end = h.Tensors[len(h.Tensors)-1].End
		}
		return nil, fmt.Errorf("safetensors: the tensors cover %d bytes of data, the file holds %d: the file is truncated or has bytes no tensor owns", end, want)
	}
	return h, nil
}

// parseHeader parses the JSON header: tensors sorted by offset, checked to
// cover [0, end) without holes or overlaps.
func parseHeader(buf []byte) (*Header, error) {
	if buf[0] != '{' {
		return nil, errors.New("safetensors: the header does not start with '{'")
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	h := &Header{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("safetensors: header: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("safetensors: header: expected a name")
		}
		if seen[name] {
			return nil, fmt.Errorf("safetensors: header names %q twice", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			if err := dec.Decode(&h.Metadata); err != nil {
				return nil, fmt.Errorf("safetensors: __metadata__ is not an object of strings: %w", err)
			}
			continue
		}
		var t struct {
			DType   *DType   `json:"dtype"`
			Shape   []int64  `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := dec.Decode(&t); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", name, err)
		}
		switch {
		case t.DType == nil || t.Shape == nil || t.Offsets == nil:
			return nil, fmt.Errorf("safetensors: tensor %q lacks dtype, shape or data_offsets", name)
		case t.DType.Size() == 0:
			return nil, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", name, *t.DType)
		case len(t.Offsets) != 2 || t.Offsets[0] > t.Offsets[1] || t.Offsets[1] > math.MaxInt64:
			return nil, fmt.Errorf("safetensors: tensor %q: data_offsets %v are not [begin, end] with begin <= end", name, t.Offsets)
		}
		nbytes, ok := byteSize(t.Shape, *t.DType)
		if !ok || uint64(nbytes) != t.Offsets[1]-t.Offsets[0] {
			return nil, fmt.Errorf("safetensors: tensor %q: shape %v of %s does not fill data_offsets %v", name, t.Shape, *t.DType, t.Offsets)
		}
		h.Tensors = append(h.Tensors, Tensor{Name: name, DType: *t.DType, Shape: t.Shape, Begin: int64(t.Offsets[0]), End: int64(t.Offsets[1])})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("safetensors: header: %w", err)
	}
	// after the object: only the padding spaces
	rest := buf[dec.InputOffset():]
	if len(bytes.TrimLeft(rest, " ")) != 0 {
		return nil, errors.New("safetensors: bytes other than spaces follow the header's JSON object")
	}
	slices.SortStableFunc(h.Tensors, func(a, b Tensor) int {
		if a.Begin != b.Begin {
			return cmpInt(a.Begin, b.Begin)
		}
		return cmpInt(a.End, b.End)
	})
	var at int64
	for _, t := range h.Tensors {
		if t.Begin != at {
			return nil, fmt.Errorf("safetensors: tensor %q starts at byte %d of the data, where %d was expected: the tensors overlap or leave a hole", t.Name, t.Begin, at)
		}
		at = t.End
	}
	return h, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// File is an open safetensors file.
type File struct {
	f *os.File
	Header
	path string
}

// Open opens and checks a file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	h, err := ReadHeader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{f: f, Header: *h, path: path}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Bytes returns the raw bytes of tensor name.
func (f *File) Bytes(name string) (Tensor, []byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return t, nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	b := make([]byte, t.End-t.Begin)
	if _, err := f.f.ReadAt(b, f.DataStart+t.Begin); err != nil {
		return t, nil, fmt.Errorf("%s: reading %s: %w", f.path, name, err)
	}
	return t, b, nil
}

// want checks the dtype of a tensor.
func want(t Tensor, d DType, path string) error {
	if t.DType != d {
		return fmt.Errorf("%s: tensor %q is %s, expected %s", path, t.Name, t.DType, d)
	}
	return nil
}

// Float32 reads an F32 tensor.
func (f *File) Float32(name string) ([]float32, []int64, error) {
	t, b, err := f.Bytes(name)
	if err == nil {
		err = want(t, F32, f.path)
	}
	if err != nil {
		return nil, nil, err
	}
	return DecodeFloat32(b), t.Shape, nil
}

// Float64 reads an F64 tensor.
func (f *File) Float64(name string) ([]float64, []int64, error) {
	t, b, err := f.Bytes(name)
	if err == nil {
		err = want(t, F64, f.path)
	}
	if err != nil {
		return nil, nil, err
	}
	out := make([]float64, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, t.Shape, nil
}

// Int64 reads an I64 tensor.
func (f *File) Int64(name string) ([]int64, []int64, error) {
	t, b, err := f.Bytes(name)
	if err == nil {
		err = want(t, I64, f.path)
	}
	if err != nil {
		return nil, nil, err
	}
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out, t.Shape, nil
}

// Int32 reads an I32 tensor.
func (f *File) Int32(name string) ([]int32, []int64, error) {
	t, b, err := f.Bytes(name)
	if err == nil {
		err = want(t, I32, f.path)
	}
	if err != nil {
		return nil, nil, err
	}
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, t.Shape, nil
}

// DecodeFloat32 decodes little-endian float32s.
func DecodeFloat32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// Float32Bytes encodes float32s little-endian, appending to dst.
func Float32Bytes(dst []byte, x []float32) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

// Float64Bytes encodes float64s little-endian, appending to dst.
func Float64Bytes(dst []byte, x []float64) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	}
	return dst
}

// Int64Bytes encodes int64s little-endian, appending to dst.
func Int64Bytes(dst []byte, x []int64) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v))
	}
	return dst
}

// Int32Bytes encodes int32s little-endian, appending to dst.
func Int32Bytes(dst []byte, x []int32) []byte {
	for _, v := range x {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(v))
	}
	return dst
}
