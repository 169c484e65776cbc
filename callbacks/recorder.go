// Package callbacks holds the C recorder behind llama.cpp's eval callback and
// its Go handle. The recorder decides in C which graph nodes to copy, copies
// them with ggml_backend_tensor_get while their buffers are alive, and appends
// rows across ubatches; Go reads the rows after llama_decode returns.
package callbacks

/*
#include <stdlib.h>
#include "recorder.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/lldiff/lldiff/models"

	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src" // ggml symbols
)

// Recorder records the graph nodes it is told to select. It is used by one
// llama.cpp context at a time; its methods are safe for concurrent use but
// must not be called while that context decodes.
type Recorder struct {
	mu      sync.Mutex
	r       *C.lldiff_recorder
	nodes   []models.Node
	patches []unsafe.Pointer // C memory owned by the recorder
}

// New returns a recorder with nothing selected.
func New() *Recorder {
	r := C.lldiff_recorder_new()
	if r == nil {
		panic("callbacks: out of memory")
	}
	return &Recorder{r: r}
}

// Close frees the recorder. A second Close does nothing.
func (r *Recorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return
	}
	r.freePatches()
	C.lldiff_recorder_free(r.r)
	r.r = nil
}

var errClosed = errors.New("callbacks: recorder is closed")

// Select replaces the selection with nodes; slot i of the recorder holds
// nodes[i]. An empty selection makes the callback refuse every node in the
// ask phase.
func (r *Recorder) Select(nodes []models.Node) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return errClosed
	}
	r.freePatches()
	n := len(nodes)
	if n > 0 && slices.Equal(nodes, r.nodes) && int(r.r.n_slots) == n {
		// the same selection (a contrast selects it again for every group
		// of prompts): keep the slots' buffers instead of freeing them and
		// growing new ones, which costs page faults and zeroing per call
		C.lldiff_recorder_reset(r.r)
		return nil
	}
	cstr := func(s string) *C.char { return C.CString(s) }
	names := make([]*C.char, n)
	ops := make([]*C.char, n)
	srcs := make([]*C.char, n)
	nots := make([]*C.char, n)
	for i, nd := range nodes {
		names[i], ops[i], srcs[i], nots[i] = cstr(nd.FullName()), cstr(nd.Op), cstr(nd.Src), cstr(nd.NotSrc)
	}
	defer func() {
		for i := range n {
			C.free(unsafe.Pointer(names[i]))
			C.free(unsafe.Pointer(ops[i]))
			C.free(unsafe.Pointer(srcs[i]))
			C.free(unsafe.Pointer(nots[i]))
		}
	}()
	// The arrays of C pointers live in C memory: cgo forbids passing Go
	// memory that holds pointers.
	var pn, po, ps, pt **C.char
	if n > 0 {
		sz := C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
		pn, po, ps, pt = (**C.char)(C.malloc(sz)), (**C.char)(C.malloc(sz)), (**C.char)(C.malloc(sz)), (**C.char)(C.malloc(sz))
		defer C.free(unsafe.Pointer(pn))
		defer C.free(unsafe.Pointer(po))
		defer C.free(unsafe.Pointer(ps))
		defer C.free(unsafe.Pointer(pt))
		copy(unsafe.Slice(pn, n), names)
		copy(unsafe.Slice(po, n), ops)
		copy(unsafe.Slice(ps, n), srcs)
		copy(unsafe.Slice(pt, n), nots)
	}
	if C.lldiff_recorder_select(r.r, C.int(n), pn, po, ps, pt) != 0 {
		return fmt.Errorf("callbacks: %s", C.GoString(&r.r.errmsg[0]))
	}
	r.nodes = append([]models.Node(nil), nodes...)
	return nil
}

// SetRecord turns copying on (the default) or off; with it off only patches
// are applied.
func (r *Recorder) SetRecord(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r != nil {
		r.r.record = C.bool(on)
	}
}

// Reset drops recorded rows and rewinds patches, keeping the selection.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r != nil {
		C.lldiff_recorder_reset(r.r)
	}
}

// Reserve preallocates room for nfloats values in slot i so that recording
// does not grow buffers during a decode.
func (r *Recorder) Reserve(i, nfloats int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return errClosed
	}
	if C.lldiff_recorder_reserve(r.r, C.int(i), C.size_t(nfloats)) != 0 {
		return fmt.Errorf("callbacks: cannot allocate %d floats for %s", nfloats, r.nodes[i])
	}
	return nil
}

// EvalCallback returns the C callback and its user data, to be placed in
// llama_context_params.cb_eval and cb_eval_user_data.
func (r *Recorder) EvalCallback() (fn, userData unsafe.Pointer) {
	return unsafe.Pointer(C.lldiff_recorder_eval), unsafe.Pointer(r.r)
}

func (r *Recorder) slot(i int) *C.lldiff_slot {
	return (*C.lldiff_slot)(unsafe.Add(unsafe.Pointer(r.r.slots), uintptr(i)*unsafe.Sizeof(C.lldiff_slot{})))
}

// Rows returns a copy of the rows recorded in slot i and their width. A slot
// whose node never ran returns width 0.
func (r *Recorder) Rows(i int) (width int, data []float32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil || i < 0 || i >= int(r.r.n_slots) {
		return 0, nil
	}
	s := r.slot(i)
	if s.n == 0 {
		return int(s.ne0), nil
	}
	data = make([]float32, int(s.n))
	copy(data, unsafe.Slice((*float32)(unsafe.Pointer(s.data)), int(s.n)))
	return int(s.ne0), data
}

// Calls returns how many times slot i's node was recorded (once per ubatch).
func (r *Recorder) Calls(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil || i < 0 || i >= int(r.r.n_slots) {
		return 0
	}
	return int(r.slot(i).calls)
}

// Err returns the error the callback met during the last decode, if any.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil || r.r.error == 0 {
		return nil
	}
	return fmt.Errorf("capture failed: %s", C.GoString(&r.r.errmsg[0]))
}

// Stats returns how many nodes the callback was asked about and how many it
// accepted since the last Reset.
func (r *Recorder) Stats() (asked, accepted int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return 0, 0
	}
	return int64(r.r.n_ask), int64(r.r.n_yes)
}

// SetPatch makes slot i overwrite rows of its node as it is computed: row k
// of the node (counted across ubatches and decodes since the last Reset) is
// replaced by data[k*width:(k+1)*width] where mask[k] is true (all rows when
// mask is nil). Later nodes see the replaced values.
func (r *Recorder) SetPatch(i, width int, data []float32, mask []bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return errClosed
	}
	if i < 0 || i >= int(r.r.n_slots) || width <= 0 || len(data)%width != 0 {
		return fmt.Errorf("callbacks: bad patch for slot %d", i)
	}
	rows := len(data) / width
	if mask != nil && len(mask) != rows {
		return fmt.Errorf("callbacks: patch mask has %d rows, data %d", len(mask), rows)
	}
	s := r.slot(i)
	p := C.malloc(C.size_t(len(data) * 4))
	copy(unsafe.Slice((*float32)(p), len(data)), data)
	r.patches = append(r.patches, p)
	s.patch = (*C.float)(p)
	s.patch_rows = C.int64_t(rows)
	s.patch_mask = nil
	if mask != nil {
		m := C.malloc(C.size_t(rows))
		ms := unsafe.Slice((*byte)(m), rows)
		for k, b := range mask {
			ms[k] = 0
			if b {
				ms[k] = 1
			}
		}
		r.patches = append(r.patches, m)
		s.patch_mask = (*C.uint8_t)(m)
	}
	return nil
}

// ClearPatches removes the patches of every slot and frees their memory,
// keeping the selection. Callers that set new patches for each decode call
// it so that patch memory does not accumulate until the next Select.
func (r *Recorder) ClearPatches() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.freePatches()
}

// Patched returns how many rows slot i overwrote since the last Reset.
func (r *Recorder) Patched(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil || i < 0 || i >= int(r.r.n_slots) {
		return 0
	}
	return int(r.slot(i).patched)
}

func (r *Recorder) freePatches() {
	for i := 0; r.r != nil && i < int(r.r.n_slots); i++ {
		s := r.slot(i)
		s.patch, s.patch_mask, s.patch_rows = nil, nil, 0
	}
	for _, p := range r.patches {
		C.free(p)
	}
	r.patches = nil
}

// Node returns the node selected in slot i.
func (r *Recorder) Node(i int) models.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 || i >= len(r.nodes) {
		return models.Node{}
	}
	return r.nodes[i]
}

// splitName exposes the C name parser to tests.
func splitName(name string) (base string, layer int) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var bl C.size_t
	l := C.lldiff_name_split(cs, &bl)
	return name[:int(bl)], int(l)
}

// matchFake exposes the C matcher to tests: the slot in which a node named
// name, computed by op, reading the tensors named srcs would be recorded,
// or -1.
func (r *Recorder) matchFake(name, op string, srcs ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := []*C.char{C.CString(name), C.CString(op)}
	for _, s := range srcs {
		cs = append(cs, C.CString(s))
	}
	defer func() {
		for _, c := range cs {
			C.free(unsafe.Pointer(c))
		}
	}()
	var p **C.char
	if len(srcs) > 0 {
		p = (**C.char)(C.malloc(C.size_t(len(srcs)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		defer C.free(unsafe.Pointer(p))
		copy(unsafe.Slice(p, len(srcs)), cs[2:])
	}
	return int(C.lldiff_recorder_match_fake(r.r, cs[0], cs[1], C.int(len(srcs)), p))
}
