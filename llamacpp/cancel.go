package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
static bool lldiff_aborted(void *flag) { return __atomic_load_n((int *)flag, __ATOMIC_RELAXED) != 0; }
static void lldiff_set_abort(struct llama_context *c, int *flag) { llama_set_abort_callback(c, lldiff_aborted, flag); }
*/
import "C"

import (
	"context"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// A context whose ContextParams.Cancel is set watches it: once it is done,
// a C flag is raised that llama.cpp's abort callback reads between graph
// nodes (ggml checks it on its first thread before each node), so a long
// llama_decode stops within one node, and decode starts no further batch.
// The flag lives in C memory: llama.cpp keeps its address for the life of
// the context, which Go memory may not be given.

// watchCancel sets up the flag and the abort callback when c.p.Cancel is
// set. It runs once, when the context is created.
func (c *Context) watchCancel() {
	if c.p.Cancel == nil {
		return
	}
	c.abort = (*C.int)(C.calloc(1, C.sizeof_int))
	c.setAbortCallback()
	c.stopWatch = context.AfterFunc(c.p.Cancel, c.raiseAbort)
}

// raiseAbort raises the flag: llama.cpp stops the decode under way at its
// next graph node, and llama_decode returns 2.
func (c *Context) raiseAbort() {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.abort != nil {
		atomic.StoreInt32((*int32)(unsafe.Pointer(c.abort)), 1)
	}
}

// setAbortCallback points c's llama.cpp context at the flag (again after
// rebuild replaced it).
func (c *Context) setAbortCallback() {
	if c.abort != nil {
		C.lldiff_set_abort(c.c, c.abort)
	}
}

// cancelled returns the error a cancelled decode returns, or nil while
// c.p.Cancel is not done.
func (c *Context) cancelled() error {
	if c.p.Cancel == nil || c.p.Cancel.Err() == nil {
		return nil
	}
	return fmt.Errorf("llamacpp: decoding stopped: %w", context.Cause(c.p.Cancel))
}

// unwatchCancel stops watching c.p.Cancel and frees the flag; the llama.cpp
// context that read it must be freed first.
func (c *Context) unwatchCancel() {
	if c.stopWatch != nil {
		c.stopWatch()
	}
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.abort != nil {
		C.free(unsafe.Pointer(c.abort))
		c.abort = nil
	}
}
