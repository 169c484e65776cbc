package llamacpp

/*
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"slices"

	"github.com/lldiff/lldiff/models"
)

// StreamFunc receives the rows of hooks[h] at positions pos0 … pos0+n−1 of
// a streamed sequence, n = len(rows)/width, row-major. rows is memory of
// the recorder or of llama.cpp, valid only during the call: copy what must
// outlive it. An error stops the stream and is returned by Stream.
type StreamFunc func(h, pos0, width int, rows []float32) error

// DefaultStreamBytes is the memory StreamUBatch plans for the rows of one
// ubatch when the caller gives no budget.
const DefaultStreamBytes = 256 << 20

// StreamUBatch returns the ubatch size (tokens per compute graph) at which
// a streamed capture of hooks holds about budget bytes of rows per ubatch
// (DefaultStreamBytes when budget ≤ 0): at most 512, llama.cpp's default,
// so that small captures run the graph a plain Run runs, and a multiple of
// 64 from 64 tokens up. Every row is counted d_model wide (z is n_head ×
// head_dim, d_model for every architecture lldiff knows), and llama.cpp's
// logits of the ubatch (n_vocab per token, asked for at every position so
// that the last layer keeps all its rows) are counted once.
func (m *Model) StreamUBatch(hooks []models.Hook, budget int64) int {
	if budget <= 0 {
		budget = DefaultStreamBytes
	}
	perTok := int64(m.nVocab) * 4
	for _, h := range hooks {
		if h.Kind == models.Logits {
			continue // the output buffer counted above
		}
		perTok += int64(m.NEmbd()) * 4
	}
	n := budget / max(perTok, 1)
	switch {
	case n >= 512:
		return 512
	case n >= 64:
		return int(n / 64 * 64)
	default:
		return int(max(n, 1))
	}
}

// Stream decodes one sequence as Run does but hands the captured rows out
// as they are computed instead of returning them: it calls llama_decode
// for NUBatch tokens at a time (one compute graph each), and after each
// call passes emit the rows of every hook for those tokens, then drops
// them. So the memory for rows is one ubatch's, whatever the sequence's
// length: a capture of every layer of a long prompt can go to files
// without holding the whole sequence (StreamUBatch picks the ubatch size
// for a memory budget). The graphs, and so the values, are those of Run
// with the same NUBatch.
//
// Every position asks llama.cpp for its logits (otherwise the last layer
// is computed for the last row only); a Logits hook receives them. emit
// is called in position order for each hook, hooks in the order given
// within one ubatch.
func (c *Context) Stream(seq []int32, hooks []models.Hook, emit StreamFunc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return fmt.Errorf("llamacpp: context is closed")
	}
	if err := c.checkSeqs([][]int32{seq}); err != nil {
		return err
	}
	var ns nodeSlots
	hookSlot, err := c.hookSlots(&ns, hooks)
	if err != nil {
		return err
	}
	if len(ns.nodes) > 0 && c.p.NoCallback {
		return fmt.Errorf("llamacpp: this context was created without the eval callback and cannot capture")
	}
	if err := c.rec.Select(ns.nodes); err != nil {
		return err
	}
	c.rec.SetRecord(true)
	C.llama_memory_clear(C.llama_get_memory(c.c), true)
	c.rec.Reset()
	var logitHooks []int
	for i, s := range hookSlot {
		if s < 0 {
			logitHooks = append(logitHooks, i)
		}
	}
	var b tokBatch
	b.add(seq, 0, 0, true, nil)
	toks := b.toks
	step := c.p.NUBatch
	if slices.ContainsFunc(seq, func(t int32) bool { return t < 0 }) {
		// image positions (negative ids, mtmd.go) are decoded as whole
		// images, which a ubatch boundary must not cut: such a sequence
		// goes in one piece
		step = len(toks)
	}
	for b0 := 0; b0 < len(toks); b0 += step {
		b1 := min(b0+step, len(toks))
		n := b1 - b0
		var emitErr error
		err := c.decode(toks[b0:b1], func(i int, row []float32) {
			for _, h := range logitHooks {
				if emitErr == nil {
					emitErr = emit(h, b0+i, len(row), row)
				}
			}
		})
		if err == nil {
			err = emitErr
		}
		for i, s := range hookSlot {
			if err != nil {
				break
			}
			if s < 0 {
				continue
			}
			node := c.rec.Node(s) // View holds the recorder's lock
			err = c.rec.View(s, func(w int, data []float32) error {
				if w == 0 || len(data) != w*n {
					return fmt.Errorf("capture of node %s recorded %d values of width %d for %d tokens; the graph of this llama.cpp build does not match lldiff's hook table (run with -v)",
						node, len(data), w, n)
				}
				return emit(i, b0, w, data)
			})
		}
		c.rec.Drain()
		if err != nil {
			return err
		}
	}
	return nil
}
