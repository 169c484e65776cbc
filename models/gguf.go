package models

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	// DefaultAlignment is the tensor data alignment of a GGUF file that has
	// no general.alignment key.
	DefaultAlignment = 32

	// MaxDims is the largest number of dimensions of a ggml tensor.
	MaxDims = 4

	// MaxTensorName is the longest tensor name ggml accepts, in bytes
	// (GGML_MAX_NAME less the terminating NUL).
	MaxTensorName = 63

	ggufMagic = "GGUF"

	// windowSize is how much of the file the decoder buffers at a time.
	windowSize = 64 << 10
)

// ggufType is a GGUF metadata value type (enum gguf_type).
type ggufType uint32

const (
	ggufUint8 ggufType = iota
	ggufInt8
	ggufUint16
	ggufInt16
	ggufUint32
	ggufInt32
	ggufFloat32
	ggufBool
	ggufString
	ggufArray
	ggufUint64
	ggufInt64
	ggufFloat64
	ggufTypeCount
)

var ggufTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32",
	"float32", "bool", "string", "array", "uint64", "int64", "float64"}

func (t ggufType) String() string {
	if t < ggufTypeCount {
		return ggufTypeNames[t]
	}
	return fmt.Sprintf("gguf type %d", uint32(t))
}

// size returns the encoded size of one value of a fixed-size type, and the
// minimum encoded size (the length prefix) for a string.
func (t ggufType) size() int {
	switch t {
	case ggufUint8, ggufInt8, ggufBool:
		return 1
	case ggufUint16, ggufInt16:
		return 2
	case ggufUint32, ggufInt32, ggufFloat32:
		return 4
	case ggufUint64, ggufInt64, ggufFloat64, ggufString:
		return 8
	}
	return 0
}

// Smallest possible encodings, used to reject counts the file cannot hold
// before anything is allocated for them.
const (
	minKVSize         = 8 + 1 + 4 + 1         // key length, 1-byte key, type, uint8 value
	minTensorInfoSize = 8 + 1 + 4 + 8 + 4 + 8 // name length, 1-byte name, n_dims, one dim, type, offset
)

// FormatError reports a file that is not a usable GGUF file: what is wrong
// with it and what to do about it.
type FormatError struct {
	Path    string // the file, or "" when parsing from a reader
	Problem string // what is wrong
	Fix     string // what the user can do; may be empty
	Err     error  // an underlying error, such as fs.ErrNotExist; may be nil
}

func (e *FormatError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
	} else {
		b.WriteString("gguf")
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString(" (")
		b.WriteString(e.Fix)
		b.WriteString(")")
	}
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

const (
	fixCorrupt   = "the file is damaged or was not written by a GGUF writer; download or convert it again"
	fixTruncated = "the file is incomplete, e.g. an interrupted download or copy; download it again and check its size or sha256"
	fixDamaged   = "the file is truncated or damaged; download or convert it again and check its size or sha256"
	fixNotGGUF   = "pass a .gguf model file, e.g. one converted with llama.cpp's convert_hf_to_gguf.py"
)

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name string
	Type GGMLType
	// Dims are in ggml order: Dims[0] (ne0) is the row length, the fastest
	// varying dimension.
	Dims []uint64
	// Offset is the start of the tensor data relative to File.DataOffset.
	Offset uint64
	// Size is the number of bytes of tensor data.
	Size uint64
}

// NumElements returns the product of the dimensions.
func (t *TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// KV is a metadata key and its value. Values have these Go types:
//
//	uint8, int8, uint16, int16, uint32, int32, uint64, int64,
//	float32, float64, bool, string
//
// and arrays are typed slices of these ([]uint8 ... []string, []bool).
// Arrays of arrays are not supported (llama.cpp rejects them too).
type KV struct {
	Key   string
	Value any
}

// File is the header of a GGUF file: metadata and tensor table. Tensor data
// is read only on request, by ReadTensor.
type File struct {
	Path      string // "" when parsed from a reader
	Version   uint32 // 2 or 3
	KVs       []KV
	Tensors   []TensorInfo
	Alignment uint64 // of tensor data, general.alignment or 32
	// DataOffset is the byte offset of the tensor data section in the file.
	DataOffset int64
	FileSize   int64
}

// Open reads the header, metadata and tensor table of the GGUF file at path
// and checks them. It does not read tensor data. Errors about the file are
// of type *FormatError.
func Open(path string) (*File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FormatError{Path: path, Problem: "no such file", Fix: "check the path", Err: err}
		}
		return nil, &FormatError{Path: path, Problem: "cannot read the file: " + err.Error(), Err: err}
	}
	if fi.IsDir() {
		return nil, &FormatError{Path: path, Problem: "is a directory, not a GGUF file", Fix: "pass the path of a .gguf file inside it"}
	}
	if !fi.Mode().IsRegular() {
		return nil, &FormatError{Path: path, Problem: "is not a regular file", Fix: fixNotGGUF}
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, &FormatError{Path: path, Problem: "cannot open the file: " + err.Error(), Err: err}
	}
	defer fh.Close()
	return parse(fh, fi.Size(), path)
}

// Parse reads a GGUF header, metadata and tensor table from r, which holds
// size bytes, and checks them. Errors about the data are of type
// *FormatError. Parse allocates memory in proportion to what it actually
// reads, never on the strength of a count in the data.
func Parse(r io.ReaderAt, size int64) (*File, error) {
	return parse(r, size, "")
}

func parse(r io.ReaderAt, size int64, path string) (*File, error) {
	d := &decoder{r: r, size: size, path: path}
	f := &File{Path: path, FileSize: size}
	if err := d.header(f); err != nil {
		return nil, err
	}
	return f, nil
}

// decoder reads little-endian GGUF fields through a window of the file.
type decoder struct {
	r      io.ReaderAt
	size   int64
	path   string
	off    int64 // position of the next byte to read
	win    []byte
	winOff int64 // file position of win[0]
}

func (d *decoder) errorf(fix, format string, args ...any) *FormatError {
	return &FormatError{Path: d.path, Problem: fmt.Sprintf(format, args...), Fix: fix}
}

func (d *decoder) truncated(what string, need int64) error {
	return d.errorf(fixTruncated, "file ends while reading %s: %d bytes needed at byte %d, but the file is %d bytes long",
		what, need, d.off, d.size)
}

func (d *decoder) remaining() int64 { return d.size - d.off }

// take returns the next n bytes, n <= windowSize. The slice is valid until
// the next call.
func (d *decoder) take(n int, what string) ([]byte, error) {
	if n > windowSize {
		panic("models: decoder.take larger than the window")
	}
	if int64(n) > d.remaining() {
		return nil, d.truncated(what, int64(n))
	}
	if d.off < d.winOff || d.off+int64(n) > d.winOff+int64(len(d.win)) {
		if err := d.fill(what); err != nil {
			return nil, err
		}
	}
	i := d.off - d.winOff
	d.off += int64(n)
	return d.win[i : i+int64(n)], nil
}

// fill loads the window at d.off.
func (d *decoder) fill(what string) error {
	m := min(int64(windowSize), d.remaining())
	if d.win == nil {
		d.win = make([]byte, 0, m)
	}
	d.win = d.win[:m]
	k, err := d.r.ReadAt(d.win, d.off)
	if int64(k) < m {
		d.win = d.win[:0]
		if err == nil || errors.Is(err, io.EOF) {
			return d.errorf(fixTruncated, "file ends at byte %d while reading %s, but its size is %d bytes", d.off+int64(k), what, d.size)
		}
		return &FormatError{Path: d.path, Problem: fmt.Sprintf("read error at byte %d: %v", d.off, err), Err: err}
	}
	d.winOff = d.off
	return nil
}

// takeLong returns the next n bytes in a new slice, growing it as the data
// arrives so that a false size cannot cause a huge allocation.
func (d *decoder) takeLong(n int64, what string) ([]byte, error) {
	if n > d.remaining() {
		return nil, d.truncated(what, n)
	}
	out := make([]byte, 0, min(n, 4*windowSize))
	for n > 0 {
		k := min(n, windowSize)
		b, err := d.take(int(k), what)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		n -= k
	}
	return out, nil
}

func (d *decoder) u8(what string) (uint8, error) {
	b, err := d.take(1, what)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16(what string) (uint16, error) {
	b, err := d.take(2, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (d *decoder) u32(what string) (uint32, error) {
	b, err := d.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (d *decoder) str(what string) (string, error) {
	start := d.off
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", d.errorf(fixDamaged, "%s at byte %d claims to be %d bytes long, but only %d bytes remain in the file",
			what, start, n, d.remaining())
	}
	if n <= windowSize {
		b, err := d.take(int(n), what)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	b, err := d.takeLong(int64(n), what)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// describeMagic says what a file that is not GGUF seems to be.
func describeMagic(head []byte) string {
	switch {
	case len(head) >= 4 && string(head[:4]) == "FUGG":
		return "it is a big-endian GGUF file, which lldiff does not read"
	case len(head) >= 4 && (string(head[:4]) == "lmgg" || string(head[:4]) == "fmgg" || string(head[:4]) == "tjgg" || string(head[:4]) == "algg"):
		return "it is an old GGML/GGJT file from before GGUF; convert it with llama.cpp's convert_llama_ggml_to_gguf.py"
	case len(head) >= 4 && string(head[:4]) == "PK\x03\x04":
		return "it is a zip archive (a PyTorch checkpoint?)"
	case len(head) >= 6 && string(head[:6]) == "\x93NUMPY":
		return "it is a NumPy array"
	case len(head) >= 4 && string(head[:4]) == "\x7fELF":
		return "it is an ELF executable"
	case len(head) >= 10 && head[8] == '{' && head[9] == '"':
		return "it looks like a safetensors file; convert it with llama.cpp's convert_hf_to_gguf.py"
	}
	text := len(head) > 0 && utf8.Valid(head)
	for _, r := range string(head) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			text = false
			break
		}
	}
	if text {
		return "it looks like a text file"
	}
	return ""
}

func (d *decoder) header(f *File) error {
	if d.size < 4 {
		return d.errorf(fixNotGGUF, "not a GGUF file: it is only %d bytes long", d.size)
	}
	headLen := min(d.size, 64)
	head := make([]byte, headLen)
	if k, err := d.r.ReadAt(head, 0); int64(k) < headLen {
		if err == nil || errors.Is(err, io.EOF) {
			return d.errorf(fixTruncated, "file ends at byte %d, but its size is %d bytes", k, d.size)
		}
		return &FormatError{Path: d.path, Problem: "read error: " + err.Error(), Err: err}
	}
	if string(head[:4]) != ggufMagic {
		// Stop the description at the first line break so that the
		// error stays on one line.
		shown := head
		if i := strings.IndexAny(string(shown), "\r\n"); i >= 0 {
			shown = shown[:i]
		}
		p := fmt.Sprintf("not a GGUF file: it starts with %q, not %q", shown[:min(len(shown), 16)], ggufMagic)
		if len(shown) < 4 {
			p = fmt.Sprintf("not a GGUF file: it starts with %q, not %q", head[:4], ggufMagic)
		}
		if what := describeMagic(head); what != "" {
			p += "; " + what
		}
		return d.errorf(fixNotGGUF, "%s", p)
	}
	d.off = 4

	v, err := d.u32("version")
	if err != nil {
		return err
	}
	switch {
	case v == 1:
		return d.errorf("convert it again with a current llama.cpp", "GGUF version 1 is not supported (only versions 2 and 3)")
	case v&0xffff == 0 && v != 0:
		return d.errorf("convert it again on a little-endian machine", "GGUF version %#x looks byte-swapped: the file seems to be big-endian, and only little-endian files are supported", v)
	case v != 2 && v != 3:
		return d.errorf("the file is damaged, or was written by a newer GGUF writer than lldiff knows", "GGUF version %d is not supported (only versions 2 and 3)", v)
	}
	f.Version = v

	nTensors, err := d.u64("tensor count")
	if err != nil {
		return err
	}
	nKV, err := d.u64("metadata count")
	if err != nil {
		return err
	}
	rem := uint64(d.remaining())
	if nKV > rem/minKVSize {
		return d.errorf(fixDamaged, "header claims %d metadata entries, but the %d bytes left in the file can hold at most %d", nKV, rem, rem/minKVSize)
	}
	if nTensors > rem/minTensorInfoSize {
		return d.errorf(fixDamaged, "header claims %d tensors, but the %d bytes left in the file can hold at most %d", nTensors, rem, rem/minTensorInfoSize)
	}
	if nKV*minKVSize+nTensors*minTensorInfoSize > rem {
		return d.errorf(fixDamaged, "header claims %d metadata entries and %d tensors, more than the %d bytes left in the file can hold", nKV, nTensors, rem)
	}

	f.KVs = make([]KV, 0, min(nKV, 1024))
	keys := make(map[string]int, min(nKV, 1024))
	for i := range nKV {
		start := d.off
		key, err := d.str(fmt.Sprintf("key of metadata entry %d", i))
		if err != nil {
			return err
		}
		if key == "" {
			return d.errorf(fixCorrupt, "metadata entry %d at byte %d has an empty key", i, start)
		}
		if j, dup := keys[key]; dup {
			return d.errorf(fixCorrupt, "metadata key %q appears twice (entries %d and %d)", key, j, i)
		}
		keys[key] = int(i)
		t, err := d.u32("type of " + key)
		if err != nil {
			return err
		}
		val, err := d.value(ggufType(t), key)
		if err != nil {
			return err
		}
		f.KVs = append(f.KVs, KV{Key: key, Value: val})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := v.(uint32)
		if !ok {
			return d.errorf(fixCorrupt, "general.alignment has type %s, but GGUF requires uint32", valueTypeName(v))
		}
		if a == 0 || a&(a-1) != 0 {
			return d.errorf(fixCorrupt, "general.alignment is %d, not a power of two", a)
		}
		f.Alignment = uint64(a)
	}

	f.Tensors = make([]TensorInfo, 0, min(nTensors, 1024))
	names := make(map[string]int, min(nTensors, 1024))
	for i := range nTensors {
		t, err := d.tensorInfo(i)
		if err != nil {
			return err
		}
		if j, dup := names[t.Name]; dup {
			return d.errorf(fixCorrupt, "tensor name %q appears twice (tensors %d and %d)", t.Name, j, i)
		}
		names[t.Name] = int(i)
		f.Tensors = append(f.Tensors, t)
	}

	f.DataOffset = d.off
	if len(f.Tensors) > 0 {
		pad := uint64(d.off) % f.Alignment
		if pad != 0 {
			pad = f.Alignment - pad
		}
		if pad > uint64(d.remaining()) {
			return d.errorf(fixTruncated, "the tensor data should start at byte %d, but the file is only %d bytes long",
				uint64(d.off)+pad, d.size)
		}
		f.DataOffset = d.off + int64(pad)
	}
	return f.checkData(d)
}

// checkData checks that every tensor's data lies aligned inside the file and
// that no two tensors overlap.
func (f *File) checkData(d *decoder) error {
	last, lastEnd := -1, big128{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset%f.Alignment != 0 {
			return d.errorf(fixCorrupt, "tensor %q has data offset %d, which is not a multiple of the alignment %d",
				t.Name, t.Offset, f.Alignment)
		}
		end := new(big128).add(uint64(f.DataOffset)).add(t.Offset).add(t.Size)
		if last < 0 || lastEnd.less(*end) {
			last, lastEnd = i, *end
		}
	}
	if last >= 0 && (lastEnd.hi != 0 || lastEnd.lo > uint64(f.FileSize)) {
		return d.errorf(fixTruncated, "the file is %d bytes long, but its tensor data needs %s bytes (tensor %q ends there): the file is truncated or its tensor table is corrupt",
			f.FileSize, &lastEnd, f.Tensors[last].Name)
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		a, b := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if a.Offset+a.Size > b.Offset {
			return d.errorf(fixCorrupt, "tensors %q (bytes %d to %d of the data) and %q (from byte %d) overlap",
				a.Name, a.Offset, a.Offset+a.Size, b.Name, b.Offset)
		}
	}
	return nil
}

// big128 is a small unsigned sum that cannot overflow, for error messages.
type big128 struct{ hi, lo uint64 }

func (s *big128) add(v uint64) *big128 {
	var c uint64
	s.lo, c = bits.Add64(s.lo, v, 0)
	s.hi += c
	return s
}

func (s big128) less(t big128) bool {
	return s.hi < t.hi || s.hi == t.hi && s.lo < t.lo
}

func (s *big128) String() string {
	if s.hi == 0 {
		return fmt.Sprint(s.lo)
	}
	return "more than 2^64"
}

func (d *decoder) tensorInfo(i uint64) (TensorInfo, error) {
	var t TensorInfo
	start := d.off
	name, err := d.str(fmt.Sprintf("name of tensor %d", i))
	if err != nil {
		return t, err
	}
	if name == "" {
		return t, d.errorf(fixCorrupt, "tensor %d at byte %d has an empty name", i, start)
	}
	if len(name) > MaxTensorName {
		return t, d.errorf(fixCorrupt, "tensor %d has a name of %d bytes, longer than ggml's limit of %d: %.70q...", i, len(name), MaxTensorName, name)
	}
	t.Name = name
	nd, err := d.u32("dimension count of " + name)
	if err != nil {
		return t, err
	}
	if nd == 0 || nd > MaxDims {
		return t, d.errorf(fixCorrupt, "tensor %q has %d dimensions; ggml tensors have 1 to %d", name, nd, MaxDims)
	}
	t.Dims = make([]uint64, nd)
	n := uint64(1)
	for j := range t.Dims {
		v, err := d.u64("dimensions of " + name)
		if err != nil {
			return t, err
		}
		if v == 0 {
			return t, d.errorf(fixCorrupt, "tensor %q has dimension %d of size 0", name, j)
		}
		hi, lo := bits.Mul64(n, v)
		if hi != 0 || lo > math.MaxInt64 {
			return t, d.errorf(fixCorrupt, "tensor %q has absurd dimensions %v: more than 2^63 elements", name, t.Dims[:j+1])
		}
		t.Dims[j], n = v, lo
	}
	typ, err := d.u32("type of " + name)
	if err != nil {
		return t, err
	}
	t.Type = GGMLType(typ)
	if !t.Type.Known() {
		return t, d.errorf("the file is damaged, or uses a ggml type newer than lldiff knows", "tensor %q has unknown ggml type %d", name, typ)
	}
	bs := uint64(t.Type.BlockSize())
	if t.Dims[0]%bs != 0 {
		return t, d.errorf(fixCorrupt, "tensor %q of type %s has rows of %d elements, not a multiple of the block size %d",
			name, t.Type, t.Dims[0], bs)
	}
	hi, size := bits.Mul64(n/bs, uint64(t.Type.TypeSize()))
	if hi != 0 || size > math.MaxInt64 {
		return t, d.errorf(fixCorrupt, "tensor %q has absurd dimensions %v", name, t.Dims)
	}
	t.Size = size
	if t.Offset, err = d.u64("data offset of " + name); err != nil {
		return t, err
	}
	return t, nil
}

// value reads one metadata value of type t.
func (d *decoder) value(t ggufType, key string) (any, error) {
	what := "value of " + key
	switch t {
	case ggufUint8:
		return d.u8(what)
	case ggufInt8:
		v, err := d.u8(what)
		return int8(v), err
	case ggufUint16:
		return d.u16(what)
	case ggufInt16:
		v, err := d.u16(what)
		return int16(v), err
	case ggufUint32:
		return d.u32(what)
	case ggufInt32:
		v, err := d.u32(what)
		return int32(v), err
	case ggufFloat32:
		v, err := d.u32(what)
		return math.Float32frombits(v), err
	case ggufUint64:
		return d.u64(what)
	case ggufInt64:
		v, err := d.u64(what)
		return int64(v), err
	case ggufFloat64:
		v, err := d.u64(what)
		return math.Float64frombits(v), err
	case ggufBool:
		v, err := d.u8(what)
		if err != nil {
			return nil, err
		}
		if v > 1 {
			return nil, d.errorf(fixCorrupt, "bool value of %q is %d, not 0 or 1", key, v)
		}
		return v == 1, nil
	case ggufString:
		return d.str(what)
	case ggufArray:
		return d.array(key)
	}
	return nil, d.errorf(fixCorrupt, "metadata key %q has unknown value type %d", key, uint32(t))
}

func (d *decoder) array(key string) (any, error) {
	et, err := d.u32("array type of " + key)
	if err != nil {
		return nil, err
	}
	t := ggufType(et)
	n, err := d.u64("array length of " + key)
	if err != nil {
		return nil, err
	}
	if t == ggufArray {
		return nil, d.errorf(fixCorrupt, "metadata key %q is an array of arrays, which is not supported", key)
	}
	if t >= ggufTypeCount {
		return nil, d.errorf(fixCorrupt, "metadata key %q is an array of unknown value type %d", key, et)
	}
	if rem := uint64(d.remaining()); n > rem/uint64(t.size()) {
		return nil, d.errorf(fixDamaged, "metadata key %q claims %d array elements of type %s, but only %d bytes remain in the file",
			key, n, t, rem)
	}
	switch t {
	case ggufUint8:
		return readArray(d, key, n, 1, func(b []byte) uint8 { return b[0] })
	case ggufInt8:
		return readArray(d, key, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case ggufUint16:
		return readArray(d, key, n, 2, binary.LittleEndian.Uint16)
	case ggufInt16:
		return readArray(d, key, n, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case ggufUint32:
		return readArray(d, key, n, 4, binary.LittleEndian.Uint32)
	case ggufInt32:
		return readArray(d, key, n, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case ggufFloat32:
		return readArray(d, key, n, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case ggufUint64:
		return readArray(d, key, n, 8, binary.LittleEndian.Uint64)
	case ggufInt64:
		return readArray(d, key, n, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case ggufFloat64:
		return readArray(d, key, n, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case ggufBool:
		raw, err := readArray(d, key, n, 1, func(b []byte) uint8 { return b[0] })
		if err != nil {
			return nil, err
		}
		out := make([]bool, len(raw))
		for i, v := range raw {
			if v > 1 {
				return nil, d.errorf(fixCorrupt, "element %d of bool array %q is %d, not 0 or 1", i, key, v)
			}
			out[i] = v == 1
		}
		return out, nil
	case ggufString:
		out := make([]string, 0, min(n, 1<<14))
		for i := range n {
			s, err := d.str(fmt.Sprintf("element %d of %s", i, key))
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	panic("unreachable")
}

// readArray reads n fixed-size elements, growing the result as data arrives.
func readArray[T any](d *decoder, key string, n uint64, size int, conv func([]byte) T) ([]T, error) {
	out := make([]T, 0, min(n, 1<<14))
	per := uint64(windowSize / size)
	for n > 0 {
		k := min(n, per)
		b, err := d.take(int(k)*size, "array "+key)
		if err != nil {
			return nil, err
		}
		for i := 0; i < int(k); i++ {
			out = append(out, conv(b[i*size:]))
		}
		n -= k
	}
	return out, nil
}

// valueTypeName names the GGUF type of a metadata value.
func valueTypeName(v any) string {
	if t, ok := ggufTypeOf(v); ok {
		if t.array {
			return "array of " + t.elem.String()
		}
		return t.elem.String()
	}
	return fmt.Sprintf("%T", v)
}

// valueType is the GGUF encoding of a Go metadata value.
type valueType struct {
	array bool
	elem  ggufType
}

// ggufTypeOf returns how v is stored in GGUF, and false when v has a Go type
// that KV does not allow.
func ggufTypeOf(v any) (valueType, bool) {
	switch v.(type) {
	case uint8:
		return valueType{false, ggufUint8}, true
	case int8:
		return valueType{false, ggufInt8}, true
	case uint16:
		return valueType{false, ggufUint16}, true
	case int16:
		return valueType{false, ggufInt16}, true
	case uint32:
		return valueType{false, ggufUint32}, true
	case int32:
		return valueType{false, ggufInt32}, true
	case float32:
		return valueType{false, ggufFloat32}, true
	case bool:
		return valueType{false, ggufBool}, true
	case string:
		return valueType{false, ggufString}, true
	case uint64:
		return valueType{false, ggufUint64}, true
	case int64:
		return valueType{false, ggufInt64}, true
	case float64:
		return valueType{false, ggufFloat64}, true
	case []uint8:
		return valueType{true, ggufUint8}, true
	case []int8:
		return valueType{true, ggufInt8}, true
	case []uint16:
		return valueType{true, ggufUint16}, true
	case []int16:
		return valueType{true, ggufInt16}, true
	case []uint32:
		return valueType{true, ggufUint32}, true
	case []int32:
		return valueType{true, ggufInt32}, true
	case []float32:
		return valueType{true, ggufFloat32}, true
	case []bool:
		return valueType{true, ggufBool}, true
	case []string:
		return valueType{true, ggufString}, true
	case []uint64:
		return valueType{true, ggufUint64}, true
	case []int64:
		return valueType{true, ggufInt64}, true
	case []float64:
		return valueType{true, ggufFloat64}, true
	}
	return valueType{}, false
}

// Get returns the value of a metadata key.
func (f *File) Get(key string) (any, bool) {
	for i := range f.KVs {
		if f.KVs[i].Key == key {
			return f.KVs[i].Value, true
		}
	}
	return nil, false
}

// String returns the value of a string metadata key.
func (f *File) String(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.(string)
	return s, ok
}

// Uint returns the value of an integer metadata key of any width. It
// returns false when the key is missing, not an integer, or negative.
func (f *File) Uint(key string) (uint64, bool) {
	v, _ := f.Get(key)
	return toUint(v)
}

func toUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	}
	return 0, false
}

// Int returns the value of an integer metadata key of any width. It returns
// false when the key is missing, not an integer, or does not fit an int64.
func (f *File) Int(key string) (int64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	u, ok := toUint(v)
	return int64(u), ok && u <= math.MaxInt64
}

// Float returns the value of a float32 or float64 metadata key. A float32
// is converted through its shortest decimal form, so that 1e-5 stored as
// float32 reads as 1e-5, not 9.999999747378752e-06.
func (f *File) Float(key string) (float64, bool) {
	v, _ := f.Get(key)
	switch x := v.(type) {
	case float32:
		y, err := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		if err != nil { // ±Inf, NaN
			return float64(x), true
		}
		return y, true
	case float64:
		return x, true
	}
	return 0, false
}

// Bool returns the value of a bool metadata key.
func (f *File) Bool(key string) (bool, bool) {
	v, _ := f.Get(key)
	b, ok := v.(bool)
	return b, ok
}

// Strings returns the value of a string array metadata key. The slice is
// the File's own.
func (f *File) Strings(key string) ([]string, bool) {
	v, _ := f.Get(key)
	s, ok := v.([]string)
	return s, ok
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	for i := range f.Tensors {
		if f.Tensors[i].Name == name {
			return &f.Tensors[i], true
		}
	}
	return nil, false
}

// Architecture returns general.architecture, or "" when it is missing.
func (f *File) Architecture() string {
	s, _ := f.String("general.architecture")
	return s
}

// ReadTensor returns the raw bytes of the named tensor, read from f.Path.
func (f *File) ReadTensor(name string) ([]byte, error) {
	if f.Path == "" {
		return nil, fmt.Errorf("models: ReadTensor(%q): the file was parsed from a reader; use ReadTensorAt", name)
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return f.ReadTensorAt(fh, name)
}

// ReadTensorAt returns the raw bytes of the named tensor, read from r, which
// must hold the file f was parsed from.
func (f *File) ReadTensorAt(r io.ReaderAt, name string) ([]byte, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.displayPath(), name)
	}
	if t.Size > math.MaxInt || t.Offset > uint64(math.MaxInt64-f.DataOffset) {
		return nil, fmt.Errorf("%s: tensor %q is too large to read into memory", f.displayPath(), name)
	}
	buf := make([]byte, t.Size)
	off := f.DataOffset + int64(t.Offset)
	k, err := r.ReadAt(buf, off)
	if k < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, &FormatError{Path: f.Path, Problem: fmt.Sprintf("file ends at byte %d inside tensor %q (bytes %d to %d)", off+int64(k), name, off, off+int64(len(buf))), Fix: fixTruncated}
		}
		return nil, fmt.Errorf("%s: reading tensor %q: %w", f.displayPath(), name, err)
	}
	return buf, nil
}

func (f *File) displayPath() string {
	if f.Path == "" {
		return "gguf"
	}
	return f.Path
}
