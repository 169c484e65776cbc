package llamacpp

/*
#include "llama.h"
*/
import "C"

import (
	"fmt"

	"github.com/lldiff/lldiff/models"
)

// GenerateOptions configure Generate (models.GenerateOptions).
type GenerateOptions = models.GenerateOptions

// Generation is what Generate produced (models.Generation).
type Generation = models.Generation

// Generate decodes prompt and then appends the most likely token, one
// decode per token, keeping the KV cache (greedy decoding; ties go to the
// lower id). The KV cache is cleared first; nothing is captured and the
// recorder's selection is cleared. A control vector set on c applies to
// the prompt and to every generated token.
func (c *Context) Generate(prompt []int32, o GenerateOptions) (*Generation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, fmt.Errorf("llamacpp: context is closed")
	}
	if o.N < 0 {
		return nil, fmt.Errorf("llamacpp: Generate: N = %d", o.N)
	}
	if err := c.checkSeqs([][]int32{prompt}); err != nil {
		return nil, err
	}
	if len(prompt)+o.N > c.p.NCtx {
		return nil, fmt.Errorf("the prompt (%d tokens) and %d generated tokens need a context of %d, this one holds %d: pass -c %d or generate fewer tokens",
			len(prompt), o.N, len(prompt)+o.N, c.p.NCtx, roundUp(len(prompt)+o.N, 256))
	}
	if err := c.rec.Select(nil); err != nil {
		return nil, err
	}
	c.rec.Reset()
	C.llama_memory_clear(C.llama_get_memory(c.c), true)

	g := &Generation{Prompt: append([]int32(nil), prompt...)}
	nVocab := c.m.nVocab
	last := make([]float32, nVocab)
	toks := make([]batchTok, len(prompt))
	for i, t := range prompt {
		toks[i] = batchTok{tok: t, pos: i, seq: 0, logits: i == len(prompt)-1}
	}
	keep := func(_ int, logits []float32) { copy(last, logits) }
	if err := c.decode(toks, keep); err != nil {
		return nil, err
	}
	g.First = append([]float32(nil), last...)
	for step := range o.N {
		next := argmax(last)
		g.Tokens = append(g.Tokens, next)
		if o.KeepLogits {
			g.Logits = append(g.Logits, append([]float32(nil), last...))
		}
		if o.StopAtEOG && bool(C.llama_vocab_is_eog(c.m.vocab, C.llama_token(next))) {
			break
		}
		if step == o.N-1 {
			break // the last token needs no decode
		}
		if err := c.decode([]batchTok{{tok: next, pos: len(prompt) + step, seq: 0, logits: true}}, keep); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// argmax returns the index of the largest value, the lowest on ties; NaN
// never wins.
func argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] || v[best] != v[best] {
			best = i
		}
	}
	return int32(best)
}
