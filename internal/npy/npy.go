// Package npy writes and reads NumPy .npy files (format version 1.0) holding
// little-endian float32 arrays.
package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

const magic = "\x93NUMPY"

func header(shape []int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	s := strings.Join(dims, ", ")
	if len(shape) == 1 {
		s += ","
	}
	dict := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", s)
	// magic(6) + version(2) + len(2) + dict + padding + '\n' is a multiple of 64
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	h := make([]byte, 0, total+pad)
	h = append(h, magic...)
	h = append(h, 1, 0)
	hl := len(dict) + pad + 1
	h = append(h, byte(hl), byte(hl>>8))
	h = append(h, dict...)
	for range pad {
		h = append(h, ' ')
	}
	return append(h, '\n')
}

// FileSize returns the size in bytes of the file Write writes for shape:
// its header and 4 bytes per value.
func FileSize(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return int64(len(header(shape))) + 4*n
}

// Write writes data with the given shape as a float32 .npy file. It panics
// if the shape does not match len(data).
func Write(w io.Writer, shape []int, data []float32) error {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(data) {
		panic(fmt.Sprintf("npy: shape %v holds %d values, data has %d", shape, n, len(data)))
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := bw.Write(header(shape)); err != nil {
		return err
	}
	var b [4]byte
	for _, v := range data {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		if _, err := bw.Write(b[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteFile writes a .npy file, creating or truncating it.
func WriteFile(path string, shape []int, data []float32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, shape, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Read reads a float32 .npy file in C order.
func Read(r io.Reader) (shape []int, data []float32, err error) {
	br := bufio.NewReader(r)
	pre := make([]byte, 10)
	if _, err := io.ReadFull(br, pre); err != nil {
		return nil, nil, fmt.Errorf("npy: %w", err)
	}
	if string(pre[:6]) != magic {
		return nil, nil, errors.New("npy: not a .npy file")
	}
	var hl int
	switch pre[6] {
	case 1:
		hl = int(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		more := make([]byte, 2)
		if _, err := io.ReadFull(br, more); err != nil {
			return nil, nil, fmt.Errorf("npy: %w", err)
		}
		hl = int(binary.LittleEndian.Uint32(append(pre[8:10:10], more...)))
	default:
		return nil, nil, fmt.Errorf("npy: unsupported version %d", pre[6])
	}
	if hl > 1<<20 {
		return nil, nil, errors.New("npy: header too long")
	}
	h := make([]byte, hl)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, nil, fmt.Errorf("npy: %w", err)
	}
	hs := string(h)
	if !strings.Contains(hs, "'descr': '<f4'") || !strings.Contains(hs, "'fortran_order': False") {
		return nil, nil, fmt.Errorf("npy: only little-endian float32 C-order arrays are supported (save it with numpy.save(path, numpy.ascontiguousarray(a, dtype=numpy.float32))), header %q", strings.TrimSpace(hs))
	}
	i := strings.Index(hs, "'shape': (")
	if i < 0 {
		return nil, nil, errors.New("npy: no shape in header")
	}
	rest := hs[i+len("'shape': ("):]
	j := strings.IndexByte(rest, ')')
	if j < 0 {
		return nil, nil, errors.New("npy: bad shape in header")
	}
	n := 1
	for _, p := range strings.Split(rest[:j], ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		d, err := strconv.Atoi(p)
		if err != nil || d < 0 {
			return nil, nil, fmt.Errorf("npy: bad dimension %q", p)
		}
		if d > 0 && n > math.MaxInt/4/d {
			return nil, nil, fmt.Errorf("npy: shape (%s) is too large to hold in memory", rest[:j])
		}
		shape = append(shape, d)
		n *= d
	}
	// The data is read as it comes, not into a buffer of the size the
	// header claims: a damaged header must not allocate terabytes.
	buf, err := io.ReadAll(io.LimitReader(br, int64(4*n)))
	if err != nil {
		return nil, nil, fmt.Errorf("npy: data: %w", err)
	}
	if len(buf) < 4*n {
		return nil, nil, fmt.Errorf("npy: the header's shape %v needs %d bytes of data, but the file holds %d: it is truncated or its header is damaged", shape, 4*n, len(buf))
	}
	data = make([]float32, n)
	for k := range data {
		data[k] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*k:]))
	}
	return shape, data, nil
}

// NumpyPython returns a python3 that can import numpy, or "" (tests use it
// to check files with numpy.load when numpy is installed).
func NumpyPython() string {
	for _, c := range []string{"python3", "/usr/bin/python3", "/usr/local/bin/python3"} {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			return p
		}
	}
	return ""
}
