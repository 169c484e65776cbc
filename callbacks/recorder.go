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
	keep    unsafe.Pointer   // C memory of Keep: the mask, then the ubatch starts
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
	r.freeKeep()
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
	// one C string per field of each node, in the order of
	// lldiff_recorder_select's arrays: name, op, src, notsrc, via, viaop
	const nf = 6
	strs := make([][nf]*C.char, n)
	for i, nd := range nodes {
		for j, v := range [nf]string{nd.FullName(), nd.Op, nd.Src, nd.NotSrc, nd.Via, nd.ViaOp} {
			strs[i][j] = C.CString(v)
		}
	}
	defer func() {
		for i := range strs {
			for _, c := range strs[i] {
				C.free(unsafe.Pointer(c))
			}
		}
	}()
	// The arrays of C pointers live in C memory: cgo forbids passing Go
	// memory that holds pointers.
	var arrs [nf]**C.char
	if n > 0 {
		sz := C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
		for j := range arrs {
			arrs[j] = (**C.char)(C.malloc(sz))
			defer C.free(unsafe.Pointer(arrs[j]))
			a := unsafe.Slice(arrs[j], n)
			for i := range n {
				a[i] = strs[i][j]
			}
		}
	}
	if C.lldiff_recorder_select(r.r, C.int(n), arrs[0], arrs[1], arrs[2], arrs[3], arrs[4], arrs[5]) != 0 {
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

// Keep makes the recorder copy only the rows of tokens whose keep is true,
// until ClearKeep: keep has one entry per token of the decodes that follow
// (all of them, in order), and ubStart the first token of each ubatch
// llama.cpp splits them into, then len(keep). A node with one row per token
// records its kept rows; a node computed for the outputs only (as many rows
// as kept tokens in its ubatch) records all its rows; so each slot holds
// one row per kept token, in order. Other nodes record every row.
func (r *Recorder) Keep(keep []bool, ubStart []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return errClosed
	}
	n := len(ubStart) - 1
	if n < 1 || ubStart[0] != 0 || ubStart[n] != len(keep) {
		return fmt.Errorf("callbacks: ubatch starts %v do not cover %d tokens", ubStart, len(keep))
	}
	for k := range n {
		if ubStart[k+1] <= ubStart[k] {
			return fmt.Errorf("callbacks: ubatch starts %v are not increasing", ubStart)
		}
	}
	r.freeKeep()
	mem := C.malloc(C.size_t(8*(n+1) + len(keep)))
	if mem == nil {
		return fmt.Errorf("callbacks: out of memory")
	}
	starts := unsafe.Slice((*int64)(mem), n+1)
	for k, s := range ubStart {
		starts[k] = int64(s)
	}
	mask := unsafe.Slice((*byte)(unsafe.Add(mem, 8*(n+1))), len(keep))
	for i, b := range keep {
		mask[i] = 0
		if b {
			mask[i] = 1
		}
	}
	r.keep = mem
	C.lldiff_recorder_keep(r.r, (*C.uint8_t)(unsafe.Add(mem, 8*(n+1))), (*C.int64_t)(mem), C.int(n))
	return nil
}

// ClearKeep makes the recorder copy every row again.
func (r *Recorder) ClearKeep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.freeKeep()
}

func (r *Recorder) freeKeep() {
	if r.r != nil {
		C.lldiff_recorder_keep(r.r, nil, nil, 0)
	}
	if r.keep != nil {
		C.free(r.keep)
		r.keep = nil
	}
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

// fakeNode is a graph node for tests of the matcher: its name (ggml's
// "node_N" or "" for an unnamed one), its op ("" for none, as for a
// weight) and its sources.
type fakeNode struct {
	name, op string
	srcs     []fakeNode
}

// matchNode exposes the C matcher to tests: the slot in which node n would
// be recorded, or -1. It builds n and its sources, to any depth, as ggml
// tensors in C memory.
func (r *Recorder) matchNode(n fakeNode) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var allocated []unsafe.Pointer
	defer func() {
		for _, p := range allocated {
			C.free(p)
		}
	}()
	var build func(n fakeNode) *C.struct_ggml_tensor
	build = func(n fakeNode) *C.struct_ggml_tensor {
		p := C.malloc(C.size_t(unsafe.Sizeof(C.struct_ggml_tensor{})))
		allocated = append(allocated, p)
		t := (*C.struct_ggml_tensor)(p)
		name, op := C.CString(n.name), C.CString(n.op)
		defer C.free(unsafe.Pointer(name))
		defer C.free(unsafe.Pointer(op))
		if C.lldiff_fake_node(t, name, op) != 0 {
			panic("callbacks: fake node with unknown op " + n.op)
		}
		if len(n.srcs) > len(t.src) {
			panic(fmt.Sprintf("callbacks: fake node with %d sources", len(n.srcs)))
		}
		for i, s := range n.srcs {
			t.src[i] = build(s)
		}
		return t
	}
	return int(C.lldiff_recorder_match_node(r.r, build(n)))
}

// matchFake is matchNode for a node whose sources are leaves (tensors
// without an op) named srcs.
func (r *Recorder) matchFake(name, op string, srcs ...string) int {
	n := fakeNode{name: name, op: op}
	for _, s := range srcs {
		n.srcs = append(n.srcs, fakeNode{name: s})
	}
	return r.matchNode(n)
}
