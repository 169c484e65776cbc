package npy

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"unsafe"
)

// Writer writes a float32 .npy file whose shape is known before its
// values: the header with the final shape first, then the values in C
// order as they come. A capture writes each ubatch's rows this way without
// holding the whole array.
type Writer struct {
	w       io.Writer
	shape   []int
	want, n int64
	buf     []byte // conversion buffer on big-endian hosts
}

// NewWriter writes the header of a float32 array of the given shape to w
// and returns the Writer that takes its values.
func NewWriter(w io.Writer, shape []int) (*Writer, error) {
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("npy: negative dimension in shape %v", shape)
		}
		want *= int64(d)
	}
	if _, err := w.Write(header(shape)); err != nil {
		return nil, err
	}
	return &Writer{w: w, shape: append([]int(nil), shape...), want: want}, nil
}

// littleEndian reports whether float32 values are stored little-endian in
// memory, as .npy's '<f4' stores them: they can then be written as they
// are.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Write appends values. It fails, writing nothing, when they would go past
// the shape given to NewWriter.
func (w *Writer) Write(vals []float32) error {
	if len(vals) == 0 {
		return nil
	}
	if w.n+int64(len(vals)) > w.want {
		return fmt.Errorf("npy: %d more values would go past shape %v (%d values, %d written)", len(vals), w.shape, w.want, w.n)
	}
	var b []byte
	if littleEndian {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&vals[0])), 4*len(vals))
	} else {
		if cap(w.buf) < 4*len(vals) {
			w.buf = make([]byte, 4*len(vals))
		}
		b = w.buf[:4*len(vals)]
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	}
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	w.n += int64(len(vals))
	return nil
}

// Done returns an error unless every value of the shape was written: a
// file with fewer would not load.
func (w *Writer) Done() error {
	if w.n != w.want {
		return fmt.Errorf("npy: %d of the %d values of shape %v were written", w.n, w.want, w.shape)
	}
	return nil
}
