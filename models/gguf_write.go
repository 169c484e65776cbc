package models

import (
	"github.com/lldiff/lldiff/internal/outfile"

	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"path/filepath"
)

// writeBufferSize is the buffer between tensor generators and the file.
const writeBufferSize = 8 << 20

// Writer writes a GGUF version 3 file: add metadata and tensors, then call
// WriteFile or WriteTo. Tensor data is either held in memory (AddTensor) or
// produced while the file is written (AddTensorFunc), so a file of many
// gigabytes never sits in memory. The zero Writer is ready to use.
//
// Tensors are packed in the order they were added, each at an offset that is
// a multiple of the alignment (general.alignment when added, else 32), the
// layout llama.cpp requires.
type Writer struct {
	// Overwrite lets WriteFile replace an existing file.
	Overwrite bool

	kvs     []KV
	keys    map[string]bool
	tensors []writerTensor
	names   map[string]bool
}

type writerTensor struct {
	info TensorInfo
	data []byte
	fill func(w io.Writer) error
}

// AddKV adds a metadata key. value must have one of the Go types listed at
// KV; general.alignment must be a uint32 power of two.
func (w *Writer) AddKV(key string, value any) error {
	if key == "" {
		return errors.New("models: Writer.AddKV: empty key")
	}
	if w.keys[key] {
		return fmt.Errorf("models: Writer.AddKV: key %q added twice", key)
	}
	if _, ok := ggufTypeOf(value); !ok {
		return fmt.Errorf("models: Writer.AddKV(%q): value of Go type %T cannot be stored in GGUF", key, value)
	}
	if key == "general.alignment" {
		a, ok := value.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("models: Writer.AddKV: general.alignment must be a uint32 power of two, not %T %v", value, value)
		}
	}
	if w.keys == nil {
		w.keys = map[string]bool{}
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, KV{Key: key, Value: value})
	return nil
}

// AddTensor adds a tensor whose data is in memory. len(data) must be the
// size of a tensor of type t and dimensions dims (ggml order, row length
// first). Writer keeps data until the file is written.
func (w *Writer) AddTensor(name string, t GGMLType, dims []uint64, data []byte) error {
	info, err := w.newTensor(name, t, dims)
	if err != nil {
		return err
	}
	if uint64(len(data)) != info.Size {
		return fmt.Errorf("models: Writer.AddTensor(%q): %s %v needs %d bytes, have %d", name, t, dims, info.Size, len(data))
	}
	w.add(writerTensor{info: info, data: data})
	return nil
}

// AddTensorFunc adds a tensor whose data fill writes, when the file is
// written, to the io.Writer it is given. fill must write exactly the size of
// the tensor, and is called again by each WriteFile or WriteTo.
func (w *Writer) AddTensorFunc(name string, t GGMLType, dims []uint64, fill func(w io.Writer) error) error {
	info, err := w.newTensor(name, t, dims)
	if err != nil {
		return err
	}
	if fill == nil {
		return fmt.Errorf("models: Writer.AddTensorFunc(%q): nil fill function", name)
	}
	w.add(writerTensor{info: info, fill: fill})
	return nil
}

func (w *Writer) add(t writerTensor) {
	if w.names == nil {
		w.names = map[string]bool{}
	}
	w.names[t.info.Name] = true
	w.tensors = append(w.tensors, t)
}

func (w *Writer) newTensor(name string, t GGMLType, dims []uint64) (TensorInfo, error) {
	info := TensorInfo{Name: name, Type: t, Dims: append([]uint64(nil), dims...)}
	switch {
	case name == "":
		return info, errors.New("models: Writer: empty tensor name")
	case len(name) > MaxTensorName:
		return info, fmt.Errorf("models: Writer: tensor name %q is longer than %d bytes", name, MaxTensorName)
	case w.names[name]:
		return info, fmt.Errorf("models: Writer: tensor %q added twice", name)
	case !t.Known():
		return info, fmt.Errorf("models: Writer: tensor %q has unknown type %s", name, t)
	case len(dims) == 0 || len(dims) > MaxDims:
		return info, fmt.Errorf("models: Writer: tensor %q has %d dimensions, want 1 to %d", name, len(dims), MaxDims)
	}
	n := uint64(1)
	for _, d := range dims {
		hi, lo := bits.Mul64(n, d)
		if d == 0 || hi != 0 || lo > math.MaxInt64 {
			return info, fmt.Errorf("models: Writer: tensor %q has bad dimensions %v", name, dims)
		}
		n = lo
	}
	if dims[0]%uint64(t.BlockSize()) != 0 {
		return info, fmt.Errorf("models: Writer: tensor %q of type %s has rows of %d elements, not a multiple of the block size %d",
			name, t, dims[0], t.BlockSize())
	}
	hi, size := bits.Mul64(n/uint64(t.BlockSize()), uint64(t.TypeSize()))
	if hi != 0 || size > math.MaxInt64 {
		return info, fmt.Errorf("models: Writer: tensor %q is too large", name)
	}
	info.Size = size
	return info, nil
}

// alignment returns general.alignment, or the default.
func (w *Writer) alignment() uint64 {
	for _, kv := range w.kvs {
		if kv.Key == "general.alignment" {
			return uint64(kv.Value.(uint32))
		}
	}
	return DefaultAlignment
}

// layout returns the tensor infos with their offsets, and the total size of
// the tensor data.
func (w *Writer) layout() ([]TensorInfo, uint64) {
	a := w.alignment()
	infos := make([]TensorInfo, len(w.tensors))
	var off uint64
	for i, t := range w.tensors {
		infos[i] = t.info
		infos[i].Offset = off
		off += alignUp(t.info.Size, a)
	}
	return infos, off
}

// Size returns the number of bytes the file will have.
func (w *Writer) Size() int64 {
	infos, data := w.layout()
	var c countWriter
	if err := encodeHeader(&c, 3, w.kvs, infos); err != nil {
		panic(err) // unreachable: values were checked by AddKV
	}
	if len(infos) == 0 {
		return c.n
	}
	return int64(alignUp(uint64(c.n), w.alignment()) + data)
}

// WriteTo writes the GGUF file to dst. It returns the number of bytes
// written.
func (w *Writer) WriteTo(dst io.Writer) (int64, error) {
	cw := &countWriter{w: dst}
	bw := bufio.NewWriterSize(cw, writeBufferSize)
	infos, _ := w.layout()
	if err := encodeHeader(bw, 3, w.kvs, infos); err != nil {
		return cw.n, err
	}
	a := w.alignment()
	pos := uint64(cw.n) + uint64(bw.Buffered())
	if len(infos) > 0 {
		if err := writeZeros(bw, alignUp(pos, a)-pos); err != nil {
			return cw.n, err
		}
	}
	for _, t := range w.tensors {
		if t.fill == nil {
			if _, err := bw.Write(t.data); err != nil {
				return cw.n, err
			}
		} else {
			s := &tensorSink{w: bw, name: t.info.Name, limit: t.info.Size}
			if err := t.fill(s); err != nil {
				return cw.n, fmt.Errorf("models: writing tensor %q: %w", t.info.Name, err)
			}
			if s.n != s.limit {
				return cw.n, fmt.Errorf("models: writing tensor %q: wrote %d bytes, want %d", t.info.Name, s.n, s.limit)
			}
		}
		if err := writeZeros(bw, alignUp(t.info.Size, a)-t.info.Size); err != nil {
			return cw.n, err
		}
	}
	err := bw.Flush()
	return cw.n, err
}

// WriteFile writes the GGUF file to path. It writes a temporary file in the
// same directory and renames it, so that path never holds a partial file.
// It refuses to replace an existing file unless w.Overwrite is set; that
// error wraps fs.ErrExist.
func (w *Writer) WriteFile(path string) (err error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		// renaming over a directory fails, and over a device such as
		// /dev/null or a pipe replaces it with a plain file
		return fmt.Errorf("%s is not a regular file (%v): it cannot be replaced by a GGUF file; choose a file path", path, st.Mode().Type())
	}
	if !w.Overwrite {
		if _, err := os.Lstat(path); err == nil {
			return existError(path)
		}
	}
	if free, ok := diskFree(filepath.Dir(path)); ok && uint64(w.Size()) > free {
		return fmt.Errorf("%s would take %.3g GB, but its file system has %.3g GB free: free some space or write it elsewhere", path, float64(w.Size())/1e9, float64(free)/1e9)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	// removed on SIGINT/SIGTERM too (outfile.HandleSignals)
	defer outfile.Track(tmp.Name())()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = w.WriteTo(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if w.Overwrite {
		return os.Rename(tmp.Name(), path)
	}
	// Link fails if path appeared meanwhile, where Rename would replace it.
	if err = os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return existError(path)
		}
		// No hard links on this file system: check and rename.
		if _, serr := os.Lstat(path); serr == nil {
			return existError(path)
		}
		return os.Rename(tmp.Name(), path)
	}
	return os.Remove(tmp.Name())
}

func existError(path string) error {
	return fmt.Errorf("%s already exists (pass --force to overwrite it): %w", path, fs.ErrExist)
}

// tensorSink counts what a fill function writes and stops it at the tensor
// size.
type tensorSink struct {
	w     io.Writer
	name  string
	n     uint64
	limit uint64
}

func (s *tensorSink) Write(p []byte) (int, error) {
	if uint64(len(p)) > s.limit-s.n {
		return 0, fmt.Errorf("models: tensor %q: fill wrote more than its %d bytes", s.name, s.limit)
	}
	n, err := s.w.Write(p)
	s.n += uint64(n)
	return n, err
}

// countWriter counts bytes; w may be nil to count only.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.w == nil {
		c.n += int64(len(p))
		return len(p), nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var zeros [4096]byte

func writeZeros(w io.Writer, n uint64) error {
	for n > 0 {
		k := min(n, uint64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// encodeHeader writes the GGUF header, metadata and tensor table, without
// the padding that follows.
func encodeHeader(w io.Writer, version uint32, kvs []KV, tensors []TensorInfo) error {
	e := &encoder{w: w}
	e.raw([]byte(ggufMagic))
	e.u32(version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		e.str(kv.Key)
		t, ok := ggufTypeOf(kv.Value)
		if !ok {
			return fmt.Errorf("models: metadata key %q: value of Go type %T cannot be stored in GGUF", kv.Key, kv.Value)
		}
		if t.array {
			e.u32(uint32(ggufArray))
		}
		e.u32(uint32(t.elem))
		e.value(kv.Value)
	}
	for _, t := range tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(t.Offset)
	}
	return e.err
}

// encoder writes little-endian GGUF fields and keeps the first error.
type encoder struct {
	w   io.Writer
	buf [8]byte
	err error
}

func (e *encoder) raw(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *encoder) u8(v uint8)   { e.buf[0] = v; e.raw(e.buf[:1]) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.raw(e.buf[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.raw(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.raw(e.buf[:8]) }

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		_, e.err = io.WriteString(e.w, s)
	}
}

func (e *encoder) bool(b bool) {
	if b {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// value writes a scalar, or an array's length and elements.
func (e *encoder) value(v any) {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.bool(x)
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case []uint8:
		e.u64(uint64(len(x)))
		e.raw(x)
	case []int8:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u8(uint8(y))
		}
	case []uint16:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u16(y)
		}
	case []int16:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u16(uint16(y))
		}
	case []uint32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(y)
		}
	case []int32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(uint32(y))
		}
	case []float32:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u32(math.Float32bits(y))
		}
	case []bool:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.bool(y)
		}
	case []string:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.str(y)
		}
	case []uint64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(y)
		}
	case []int64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(uint64(y))
		}
	case []float64:
		e.u64(uint64(len(x)))
		for _, y := range x {
			e.u64(math.Float64bits(y))
		}
	default:
		panic(fmt.Sprintf("models: encoder: unexpected Go type %T", v))
	}
}
