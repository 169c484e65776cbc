package llamacpp

/*
#include <stdlib.h>
#include "lens.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/lldiff/lldiff/models"
)

// LensMode is how much of the final norm the logit lens applies; models
// owns the type (see models.LensMode).
type LensMode = models.LensMode

// The lens modes.
const (
	LensNorm  = models.LensNorm  // final RMSNorm with γ, then W_U (the model's own)
	LensGamma = models.LensGamma // γ ⊙ x, then W_U
	LensRaw   = models.LensRaw   // W_U · x
)

// ParseLensMode parses "norm", "gamma" or "raw".
func ParseLensMode(s string) (LensMode, error) { return models.ParseLensMode(s) }

// UnembedOptions configure NewUnembedderWith.
type UnembedOptions struct {
	// Threads is the CPU thread count (default: physical cores), at most
	// the CPUs (ClampThreads) as for a Context.
	Threads int
	// GPU runs the lens on the first GPU device when a GPU backend is
	// loaded and supports W_U's type, and on the CPU otherwise. Set it when
	// the model runs with GPU layers (-ngl > 0).
	GPU bool
	// NoMmap copies W_U into memory of the lens's own instead of mapping it
	// from the model file (the GPU always holds a copy).
	NoMmap bool
}

// unembedChunk is the most rows one ggml graph computes: the compute
// buffer holds chunk × (n_vocab + 2·d_model) floats, capped near 32 MiB.
func unembedChunk(d, nVocab int) int {
	return max(1, min(64, (32<<20)/(4*(nVocab+2*d))))
}

// uploadChunk is how many bytes of W_U are read and uploaded at a time
// when it is not mapped.
const uploadChunk = 16 << 20

// Unembedder is the logit lens computed by ggml on the unembedding matrix
// as stored in the model file (Q6_K, Q8_0, F16, ...), never widened to
// float32: for each row x it computes W_U · (γ ⊙ x / sqrt(mean(x²) + eps))
// in LensNorm mode, and the linear variants in the others. For a final
// LayerNorm (gpt2, gptneox) LensNorm is W_U · (γ ⊙ (x − mean x) /
// sqrt(var(x) + eps) + β), the graph llama.cpp computes, and LensGamma
// centres x before scaling it by γ (see models.LensMode).
//
// Memory: on the CPU, W_U is mapped read-only from the model file, so its
// pages are the file's page cache, shared with llama.cpp's own mapping and
// not counted twice; with NoMmap, on a GPU, or where mapping fails, the
// Unembedder holds a copy of W_U's bytes as stored (Llama 2 7B's Q6_K
// output.weight: 105 MiB; Llama 3 8B's 128256×4096: 411 MiB) in the
// backend's memory. The compute buffer adds about 32 MiB at most (see
// unembedChunk) and γ is d_model floats. The model keeps all of this
// between lenses, until it is closed (below).
//
// The Unembedders a Model hands out with the same options share one lens,
// which the model keeps until it is closed and the last of them is closed
// (see lensCore): a second compare on a loaded model does not map W_U, set
// up the compute buffer and start threads again (about 15 ms of page
// faults and thread starts on bench-cpu, and on a GPU a new upload of
// W_U). Unembed calls on a shared lens are serialised by its lock; Close
// must not race with them.
type Unembedder struct {
	mu     sync.Mutex // guards closed
	closed bool
	l      *lensCore
}

// lensCore is one lens in ggml and the Go side's description of it. It is
// freed when its last reference is released: one per open Unembedder, and
// one held by the model that caches it (Model.lenses) until Model.Close.
type lensCore struct {
	mu      sync.Mutex // serialises Unembed; guards c and refs
	c       *C.lldiff_lens
	refs    int
	w       models.Unembedding
	device  string
	mapped  bool
	bytes   uint64
	threads int
}

// retain adds a reference to a lens that still has one.
func (l *lensCore) retain() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs++
}

// release drops a reference and frees the lens with the last one.
func (l *lensCore) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refs--
	if l.refs <= 0 && l.c != nil {
		C.lldiff_lens_free(l.c)
		l.c = nil
	}
}

// NewUnembedder returns the logit lens of m computed on the CPU with the
// given number of threads (default: physical cores).
func (m *Model) NewUnembedder(threads int) (*Unembedder, error) {
	return m.NewUnembedderWith(UnembedOptions{Threads: threads})
}

// NewUnembedderWith returns the logit lens of m. It fails for models
// without output_norm.weight (or output_norm.bias for a LayerNorm), or
// whose W_U type ggml cannot multiply by. The Unembedder reads the weights from the
// model file and stays usable after m is closed. Unembedders with the same
// options share one lens, which m keeps between them until it is closed.
func (m *Model) NewUnembedderWith(o UnembedOptions) (*Unembedder, error) {
	o = o.normalized()
	m.lensMu.Lock()
	defer m.lensMu.Unlock()
	m.mu.Lock()
	closed := m.c == nil
	m.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if l := m.lenses[o]; l != nil {
		l.retain()
		return &Unembedder{l: l}, nil
	}
	u, err := newUnembedder(m.File, o)
	if err != nil {
		return nil, err
	}
	if m.lenses == nil {
		m.lenses = map[UnembedOptions]*lensCore{}
	}
	u.l.retain() // the model's reference
	m.lenses[o] = u.l
	return u, nil
}

// closeLenses drops the model's references to the lenses it cached; those
// still open elsewhere stay usable until closed.
func (m *Model) closeLenses() {
	m.lensMu.Lock()
	defer m.lensMu.Unlock()
	for o, l := range m.lenses {
		l.release()
		delete(m.lenses, o)
	}
}

// normalized fills in the default thread count and clamps it to the CPUs,
// as a Context does (more threads than CPUs only wait for one another).
func (o UnembedOptions) normalized() UnembedOptions {
	if o.Threads <= 0 {
		o.Threads = PhysicalCores()
	}
	o.Threads, _ = ClampThreads(o.Threads)
	return o
}

// newUnembedder creates a lens of its own (not shared) for f.
func newUnembedder(f *models.File, o UnembedOptions) (*Unembedder, error) {
	Init()
	w, err := models.FindUnembedding(f)
	if err != nil {
		return nil, err
	}
	ti, _ := f.Tensor(w.Unembed)
	if !ti.Type.Known() || w.D%ti.Type.BlockSize() != 0 {
		return nil, fmt.Errorf("%s: %s has type %s, which ggml cannot multiply by", f.Path, w.Unembed, ti.Type)
	}
	o = o.normalized()
	gamma, err := f.ReadTensorFloat32(w.Norm)
	if err != nil {
		return nil, err
	}
	var beta, bias []float32
	if w.NormBias != "" {
		if beta, err = f.ReadTensorFloat32(w.NormBias); err != nil {
			return nil, err
		}
	}
	if w.OutputBias != "" {
		if bias, err = f.ReadTensorFloat32(w.OutputBias); err != nil {
			return nil, err
		}
	}
	cbool := func(b bool) C.int {
		if b {
			return 1
		}
		return 0
	}
	var errBuf [512]C.char
	c := C.lldiff_lens_new(C.int64_t(w.D), C.int64_t(w.NVocab), C.int(ti.Type), C.float(w.Eps), cbool(beta != nil), cbool(bias != nil),
		cbool(o.GPU), C.int(o.Threads), C.int(unembedChunk(w.D, w.NVocab)), &errBuf[0], C.size_t(len(errBuf)))
	if c == nil {
		return nil, fmt.Errorf("%s: logit lens: %s", f.Path, C.GoString(&errBuf[0]))
	}
	l := &lensCore{c: c, refs: 1, w: *w, threads: o.Threads}
	u := &Unembedder{l: l}
	ok := false
	defer func() {
		if !ok {
			u.Close()
		}
	}()
	off := f.DataOffset + int64(ti.Offset)
	if !o.NoMmap {
		cpath := C.CString(f.Path)
		defer C.free(unsafe.Pointer(cpath))
		l.mapped = C.lldiff_lens_map(c, cpath, C.int64_t(off)) == 0
	}
	if C.lldiff_lens_alloc(c, &errBuf[0], C.size_t(len(errBuf))) != 0 {
		return nil, fmt.Errorf("%s: logit lens: %s", f.Path, C.GoString(&errBuf[0]))
	}
	C.lldiff_lens_set_gamma(c, (*C.float)(unsafe.Pointer(&gamma[0])))
	if beta != nil {
		C.lldiff_lens_set_beta(c, (*C.float)(unsafe.Pointer(&beta[0])))
	}
	if bias != nil {
		C.lldiff_lens_set_bias(c, (*C.float)(unsafe.Pointer(&bias[0])))
	}
	if !l.mapped {
		if err := l.upload(f, ti, off); err != nil {
			return nil, err
		}
	}
	l.device = C.GoString(C.lldiff_lens_device(c))
	l.bytes = uint64(C.lldiff_lens_buffer_bytes(c))
	ok = true
	return u, nil
}

// upload copies W_U from the file to the backend, uploadChunk bytes at a
// time, so that Go never holds the whole matrix.
func (l *lensCore) upload(f *models.File, ti *models.TensorInfo, off int64) error {
	fh, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	buf := make([]byte, min(uploadChunk, ti.Size))
	for done := uint64(0); done < ti.Size; {
		b := buf[:min(uint64(len(buf)), ti.Size-done)]
		if _, err := fh.ReadAt(b, off+int64(done)); err != nil {
			return fmt.Errorf("%s: reading %s: %w", f.Path, ti.Name, err)
		}
		C.lldiff_lens_set_w(l.c, unsafe.Pointer(&b[0]), C.size_t(done), C.size_t(len(b)))
		done += uint64(len(b))
	}
	return nil
}

// Unembed writes the lens of the n rows of x (n × d_model, row-major) in
// mode to dst as n × n_vocab logits, reusing dst when its capacity
// suffices, and returns it.
func (u *Unembedder) Unembed(dst, x []float32, n int, mode LensMode) ([]float32, error) {
	u.mu.Lock()
	closed := u.closed
	u.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("llamacpp: unembedder is closed")
	}
	// an open Unembedder holds a reference: l.c is not freed under it
	l := u.l
	l.mu.Lock()
	defer l.mu.Unlock()
	d, nv := l.w.D, l.w.NVocab
	if n < 0 || len(x) != n*d {
		return nil, fmt.Errorf("logit lens: %d values are not %d rows of d_model %d", len(x), n, d)
	}
	var cmode C.int
	switch mode {
	case LensNorm:
		cmode = C.LLDIFF_LENS_NORM
	case LensGamma:
		cmode = C.LLDIFF_LENS_GAMMA
	case LensRaw:
		cmode = C.LLDIFF_LENS_RAW
	default:
		return nil, fmt.Errorf("logit lens: invalid mode %v", mode)
	}
	if cap(dst) < n*nv {
		dst = make([]float32, n*nv)
	}
	dst = dst[:n*nv]
	if n == 0 {
		return dst, nil
	}
	if l.w.LayerNorm && mode == LensGamma {
		// γ ⊙ (x − mean x): the centring of the LayerNorm, done here
		x = centerRows(x, d)
	}
	var errBuf [512]C.char
	if C.lldiff_lens_unembed(l.c, (*C.float)(unsafe.Pointer(&x[0])), C.int64_t(n), cmode,
		(*C.float)(unsafe.Pointer(&dst[0])), &errBuf[0], C.size_t(len(errBuf))) != 0 {
		return nil, fmt.Errorf("logit lens: %s", C.GoString(&errBuf[0]))
	}
	if mode == LensNorm && l.w.FinalSoftcap > 0 {
		// gemma2's final logit soft-capping, as its graph applies it
		models.Softcap(dst, l.w.FinalSoftcap)
	}
	return dst, nil
}

// centerRows returns a copy of the rows of x (of width d) with each row's
// mean subtracted, accumulated in float64.
func centerRows(x []float32, d int) []float32 {
	out := make([]float32, len(x))
	for r := 0; r < len(x); r += d {
		var s float64
		for _, v := range x[r : r+d] {
			s += float64(v)
		}
		mean := s / float64(d)
		for i, v := range x[r : r+d] {
			out[r+i] = float32(float64(v) - mean)
		}
	}
	return out
}

// Weights describes the tensors the lens uses.
func (u *Unembedder) Weights() models.Unembedding { return u.l.w }

// D returns d_model, the width of the rows Unembed takes.
func (u *Unembedder) D() int { return u.l.w.D }

// NVocab returns the width of the rows Unembed returns.
func (u *Unembedder) NVocab() int { return u.l.w.NVocab }

// Device returns the name of the ggml backend computing the lens, such as
// "CPU" or "CUDA0".
func (u *Unembedder) Device() string { return u.l.device }

// Threads returns the CPU threads the lens computes with.
func (u *Unembedder) Threads() int { return u.l.threads }

// Mapped reports whether W_U is mapped from the model file rather than
// copied.
func (u *Unembedder) Mapped() bool { return u.l.mapped }

// BufferBytes returns the memory the lens allocated: the weights it copied
// and its compute buffer (mapped weights are not counted).
func (u *Unembedder) BufferBytes() uint64 { return u.l.bytes }

// Close releases the lens: it is freed once its model is closed and no
// other Unembedder shares it. A second Close does nothing.
func (u *Unembedder) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		u.l.release()
	}
	return nil
}

// dequantize decodes n elements of type t with ggml's decoder, for tests
// of types models.Dequantize does not know (K-quants).
func dequantize(t models.GGMLType, src []byte, n int) ([]float32, error) {
	if rs, ok := t.RowSize(uint64(n)); !ok || rs != uint64(len(src)) || n == 0 {
		return nil, fmt.Errorf("dequantize: %d bytes are not %d elements of %s", len(src), n, t)
	}
	dst := make([]float32, n)
	if C.lldiff_dequantize(C.int(t), unsafe.Pointer(&src[0]), (*C.float)(unsafe.Pointer(&dst[0])), C.int64_t(n)) != 0 {
		return nil, fmt.Errorf("dequantize: ggml cannot decode %s", t)
	}
	return dst, nil
}
