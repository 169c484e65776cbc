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

// SeqRows holds the activations of one sequence at chosen positions (see
// models.SeqRows).
type SeqRows = models.SeqRows

// RunRows decodes sequences as Run does (NSeqMax at a time, the KV cache
// cleared before each group) but keeps only the rows at positions pos[i] of
// sequence i, and asks llama.cpp for the logits of those rows only. That is
// what a contrast over many prompts needs: at --pos last it saves computing
// and copying the logits of every other position (n_vocab floats each),
// which for small models costs more than the layers.
//
// llama.cpp computes the last layer after its residual add (resid_mid,
// mlp_out, resid_post of layer n_layer−1, ln_final) for the output rows
// only; RunRows recognises such nodes by their row count and maps their
// rows back to positions.
func (c *Context) RunRows(seqs [][]int32, pos [][]int, hooks []models.Hook) ([]*SeqRows, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, fmt.Errorf("llamacpp: context is closed")
	}
	if len(pos) != len(seqs) {
		return nil, fmt.Errorf("llamacpp: RunRows: positions for %d sequences, %d sequences", len(pos), len(seqs))
	}
	if err := c.checkSeqs(seqs); err != nil {
		return nil, err
	}
	// outs[i]: the distinct positions of sequence i in ascending order,
	// the order llama.cpp outputs them in
	outs := make([][]int, len(seqs))
	for i, ps := range pos {
		if len(ps) == 0 {
			return nil, fmt.Errorf("sequence %d: no positions asked for", i)
		}
		for _, p := range ps {
			if p < 0 || p >= len(seqs[i]) {
				return nil, fmt.Errorf("sequence %d: position %d outside its %d tokens", i, p, len(seqs[i]))
			}
		}
		o := slices.Clone(ps)
		slices.Sort(o)
		outs[i] = slices.Compact(o)
	}
	var ns nodeSlots
	hookSlot, err := c.hookSlots(&ns, hooks)
	if err != nil {
		return nil, err
	}
	if len(ns.nodes) > 0 && c.p.NoCallback {
		return nil, fmt.Errorf("llamacpp: this context was created without the eval callback and cannot capture")
	}
	if err := c.rec.Select(ns.nodes); err != nil {
		return nil, err
	}
	c.rec.SetRecord(true)
	out := make([]*SeqRows, len(seqs))
	for start := 0; start < len(seqs); {
		end, total := c.nextGroup(seqs, start)
		if err := c.runRowsGroup(seqs[start:end], pos[start:end], outs[start:end], total, hooks, hookSlot, out[start:end]); err != nil {
			return nil, err
		}
		start = end
	}
	return out, nil
}

// ubatchStarts returns the first token of each ubatch llama.cpp computes
// when decode passes n tokens in batches of nBatch: each batch is split into
// consecutive ubatches of nUBatch tokens (llama.cpp's simple split, which a
// unified KV cache uses), then n.
func ubatchStarts(n, nBatch, nUBatch int) []int {
	var s []int
	for b0 := 0; b0 < n; b0 += nBatch {
		for u := b0; u < min(b0+nBatch, n); u += nUBatch {
			s = append(s, u)
		}
	}
	return append(s, n)
}

func (c *Context) runRowsGroup(seqs [][]int32, pos, outs [][]int, total int, hooks []models.Hook, hookSlot []int, dst []*SeqRows) error {
	C.llama_memory_clear(C.llama_get_memory(c.c), true)
	c.rec.Reset()
	nVocab := c.m.nVocab
	// flat token order, sequence by sequence; outRow[i] maps a sequence's
	// position to its row among the group's outputs
	flat := make([]batchTok, 0, total)
	rowOf := make([]map[int]int, len(seqs)) // position → output row
	nOut := 0
	for si, s := range seqs {
		rowOf[si] = map[int]int{}
		k := 0
		for p, t := range s {
			isOut := k < len(outs[si]) && outs[si][k] == p
			if isOut {
				rowOf[si][p] = nOut
				nOut++
				k++
			}
			flat = append(flat, batchTok{tok: t, pos: p, seq: si, logits: isOut})
		}
	}
	seqStart := make([]int, len(seqs)) // first flat index of each sequence
	for si := 1; si < len(seqs); si++ {
		seqStart[si] = seqStart[si-1] + len(seqs[si-1])
	}
	// the logits go straight from llama.cpp's buffer to each sequence's
	// rows, in the order (and with the repeats) of pos, when a hook asks
	// for them (a vocabulary's worth of floats per row, which contrast
	// does not read)
	wantLogits := models.AsksLogits(hooks)
	ks := make([]map[int][]int, len(seqs)) // position → indices in pos
	for si := range seqs {
		dst[si] = &SeqRows{Positions: slices.Clone(pos[si]), Acts: map[models.Hook]*models.Activation{}}
		if wantLogits {
			dst[si].Logits = &models.Activation{Hook: models.Hook{Kind: models.Logits, Layer: -1}, Width: nVocab, Data: make([]float32, len(pos[si])*nVocab)}
		}
		ks[si] = map[int][]int{}
		for k, p := range pos[si] {
			ks[si][p] = append(ks[si][p], k)
		}
	}
	if nOut < total && !hasImages(flat) && len(hooks) > 0 {
		// copy only the rows asked for: a compare of two 30-token prompts
		// at the last position copies 2 rows per hook instead of 60 (the
		// memory of the others would be written once and never read)
		keep := make([]bool, total)
		for i, t := range flat {
			keep[i] = t.logits
		}
		if err := c.rec.Keep(keep, ubatchStarts(total, c.p.NBatch, c.p.NUBatch)); err != nil {
			return err
		}
		defer c.rec.ClearKeep()
	}
	err := c.decode(flat, func(i int, row []float32) {
		if !wantLogits {
			return
		}
		t := flat[i]
		for _, k := range ks[t.seq][t.pos] {
			copy(dst[t.seq].Logits.Row(k), row)
		}
	})
	if err != nil {
		return err
	}
	for i, h := range hooks {
		s := hookSlot[i]
		if s < 0 {
			for si := range seqs {
				dst[si].Acts[h] = dst[si].Logits
			}
			continue
		}
		// the rows are read where the recorder holds them: only the asked
		// positions are copied (a contrast keeps one row of ~20 per prompt)
		node := c.rec.Node(s) // View holds the recorder's lock
		err := c.rec.View(s, func(w int, data []float32) error {
			var full bool
			switch {
			case w > 0 && len(data) == w*total:
				full = true
			case w > 0 && len(data) == w*nOut:
				full = false // computed for the output rows only
			default:
				return fmt.Errorf("capture of node %s recorded %d values of width %d for %d tokens (%d output rows); the graph of this llama.cpp build does not match lldiff's hook table (run with -v)",
					node, len(data), w, total, nOut)
			}
			for si := range seqs {
				a := &models.Activation{Hook: h, Width: w, Data: make([]float32, len(pos[si])*w)}
				for k, p := range pos[si] {
					r := rowOf[si][p]
					if full {
						r = seqStart[si] + p
					}
					copy(a.Row(k), data[r*w:(r+1)*w])
				}
				dst[si].Acts[h] = a
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
