package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/lldiff/lldiff/models"
)

// Control vectors
//
// llama.cpp adds a control vector with ggml_add nodes after each layer's
// residual add (build_cvec, in llama-graph.cpp): the vector of layer L is
// added to l_out-L, lldiff's resid_post.L, for every token. It keeps one
// F32 tensor per layer 1..n_layer−1 (never one for layer 0) and
// llama_apply_adapter_cvec takes them as one buffer that starts at layer 1.
//
// Graph reuse: llama.cpp reuses the previous compute graph when the next
// ubatch has the same shape and llm_graph_params.allow_reuse holds. That
// check compares the adapter by address (cvec == other.cvec), which is the
// same for the life of the context, so turning the vector on or off, or
// changing its layer range, after a decode leaves the old graph, with or
// without the add nodes, in use: the new vector is silently ignored (or the
// old one kept). Changing the values in place is safe: the graph reads the
// adapter's tensors when it runs.
//
// lldiff therefore turns llama.cpp's adapter on once, over every layer,
// before a context's first decode, and afterwards only rewrites its values:
// "no vector" is a vector of zeros (x + 0 is x exactly). A context that has
// already decoded without a vector cannot take one (SetControlVector says
// so); TestControlVectorStaleGraph shows the stale graph llama.cpp would use.

// cvecState is a Context's control-vector state.
type cvecState struct {
	// on: llama.cpp's adapter is enabled over layers 1..n_layer−1, so the
	// add nodes are part of every graph built since.
	on bool
	// layers with a non-zero direction
	layers []int
}

// SetControlVector makes every later decode of c add dirs[l] to the output
// of layer l (resid_post.l) at every token, as llama.cpp's --control-vector
// does with direction.l. dirs has at most NLayer entries; a nil or missing
// entry adds nothing at that layer. llama.cpp never adds at layer 0, so
// dirs[0] must be nil or zero. Each entry has NEmbd finite values; c keeps
// no reference to them.
//
// llama.cpp reuses a compute graph when the next batch has the same shape,
// and its reuse check does not see a control vector being turned on: a
// vector turned on after a decode would be ignored until the batch shape
// changed. So the first call on a context that has already decoded without
// a vector rebuilds the llama.cpp context (same parameters, empty KV cache);
// later calls only rewrite the vector's values, which the graph reads when
// it runs, and may come between any two decodes.
func (c *Context) SetControlVector(dirs [][]float32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return fmt.Errorf("llamacpp: context is closed")
	}
	nl, d := c.m.NLayer(), c.m.NEmbd()
	if len(dirs) <= nl && nl < 2 {
		return fmt.Errorf("the model has %d layer: llama.cpp adds control vectors to layers 1 and up only", nl)
	}
	layers, err := models.ControlVectorLayers(dirs, nl, d)
	if err != nil {
		return err
	}
	data := make([]float32, (nl-1)*d)
	for _, l := range layers {
		copy(data[(l-1)*d:l*d], dirs[l])
	}
	if !c.cvec.on && c.decodes > 0 {
		if err := c.rebuild(); err != nil {
			return err
		}
	}
	if err := c.applyAdapter(data); err != nil {
		return err
	}
	c.cvec.layers = layers
	return nil
}

// ClearControlVector makes later decodes add nothing. The add nodes stay in
// the graph with zero vectors, which changes no value.
func (c *Context) ClearControlVector() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return fmt.Errorf("llamacpp: context is closed")
	}
	if !c.cvec.on {
		return nil
	}
	c.cvec.layers = nil
	return c.applyAdapter(make([]float32, (c.m.NLayer()-1)*c.m.NEmbd()))
}

// ControlVectorLayers returns the layers where the current control vector
// is not zero, in ascending order.
func (c *Context) ControlVectorLayers() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.cvec.layers...)
}

// applyAdapter gives llama.cpp the per-layer data (layer 1 first) over
// layers 1..n_layer−1 and marks the adapter on. It does not check for the
// stale-graph case: SetControlVector does. c.mu must be held.
func (c *Context) applyAdapter(data []float32) error {
	nl, d := c.m.NLayer(), c.m.NEmbd()
	if len(data) != (nl-1)*d {
		panic("llamacpp: applyAdapter: wrong data length")
	}
	ret := C.llama_apply_adapter_cvec(c.c, (*C.float)(unsafe.Pointer(&data[0])), C.size_t(len(data)),
		C.int32_t(d), 1, C.int32_t(nl-1))
	if ret != 0 {
		return fmt.Errorf("llama_apply_adapter_cvec failed (status %d); run with -v for llama.cpp's log", int(ret))
	}
	c.cvec.on = true
	return nil
}
