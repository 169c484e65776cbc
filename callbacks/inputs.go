package callbacks

/*
#include "recorder.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Input records rows that enter the graph as an input rather than as a
// computed node, as if slot i's node had produced them: the input
// embeddings of a batch given as embeddings (an image's positions) are the
// graph's input tensor, which the eval callback never sees. It applies a
// patch of slot i that covers these rows (counted as SetPatch counts them)
// and returns the rows to feed, patched; rows itself is not changed. Call it
// just before the decode that feeds the rows.
func (r *Recorder) Input(i, width int, rows []float32) ([]float32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return nil, errClosed
	}
	if i < 0 || i >= int(r.r.n_slots) || width <= 0 || len(rows)%width != 0 {
		return nil, fmt.Errorf("callbacks: bad input rows for slot %d", i)
	}
	s := r.slot(i)
	if s.ne0 != 0 && int(s.ne0) != width {
		return nil, fmt.Errorf("callbacks: input rows of width %d for node %s of width %d", width, r.nodes[i], int64(s.ne0))
	}
	s.ne0 = C.int64_t(width)
	n := len(rows) / width
	out := rows
	if s.patch != nil {
		out = append([]float32(nil), rows...)
		patch := unsafe.Slice((*float32)(unsafe.Pointer(s.patch)), int(s.patch_rows)*width)
		var mask []byte
		if s.patch_mask != nil {
			mask = unsafe.Slice((*byte)(unsafe.Pointer(s.patch_mask)), int(s.patch_rows))
		}
		for k := range n {
			pr := int(s.patch_row) + k
			if pr >= int(s.patch_rows) {
				break
			}
			if mask != nil && mask[pr] == 0 {
				continue
			}
			copy(out[k*width:(k+1)*width], patch[pr*width:(pr+1)*width])
			s.patched++
		}
	}
	s.patch_row += C.int64_t(n)
	s.calls++
	if r.r.record {
		need := int(s.n) + len(out)
		if C.lldiff_recorder_reserve(r.r, C.int(i), C.size_t(need)) != 0 {
			return nil, fmt.Errorf("callbacks: out of memory recording %d input rows", n)
		}
		dst := unsafe.Slice((*float32)(unsafe.Pointer(s.data)), need)
		copy(dst[int(s.n):], out)
		s.n = C.size_t(need)
	}
	return out, nil
}

// Seen returns how many rows of slot i's node went by since the last Reset
// (computed by the graph or given to Input), recorded or not: the count
// SetPatch's row numbers run on.
func (r *Recorder) Seen(i int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil || i < 0 || i >= int(r.r.n_slots) {
		return 0
	}
	return int(r.slot(i).patch_row)
}

// Slots returns the number of selected nodes.
func (r *Recorder) Slots() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.nodes)
}
