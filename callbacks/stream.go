package callbacks

/*
#include "recorder.h"
*/
import "C"

import "unsafe"

// View calls f with the width and the rows recorded in slot i since the
// last Reset or Drain, without copying them: data is the recorder's C
// memory and valid only during f. A slot whose node never ran gives width
// 0 and no data. It returns f's error.
func (r *Recorder) View(i int, f func(width int, data []float32) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return errClosed
	}
	if i < 0 || i >= int(r.r.n_slots) {
		return f(0, nil)
	}
	s := r.slot(i)
	if s.n == 0 {
		return f(int(s.ne0), nil)
	}
	return f(int(s.ne0), unsafe.Slice((*float32)(unsafe.Pointer(s.data)), int(s.n)))
}

// Drain drops the rows recorded in every slot but keeps their buffers,
// widths, call counts and patch positions: a caller that reads the rows
// after each llama_decode (a streamed capture) drains them so that the
// next decode's rows start at the beginning, and the recorder never holds
// more than one decode's rows.
func (r *Recorder) Drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; r.r != nil && i < int(r.r.n_slots); i++ {
		r.slot(i).n = 0
	}
}
