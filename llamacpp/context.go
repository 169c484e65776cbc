package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
#include "ggml-cpu.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"unsafe"

	"github.com/lldiff/lldiff/callbacks"
	"github.com/lldiff/lldiff/models"
)

// MaxThreads is the most CPU threads a context can use (GGML_MAX_N_THREADS):
// ggml aborts when it cannot start more and hangs on a thread pool larger
// than this.
const MaxThreads = C.GGML_MAX_N_THREADS

// MaxSeqs is the most sequences a context decodes together
// (LLAMA_MAX_SEQ).
const MaxSeqs = 256

// ContextParams configure a context. Zero values take the defaults.
type ContextParams struct {
	// NCtx is the context size in tokens, shared by all sequences decoded
	// together (default 512).
	NCtx int
	// NBatch is the most tokens given to one llama_decode call (default
	// NCtx); NUBatch the most computed in one graph (default 512).
	NBatch, NUBatch int
	// Threads is the CPU thread count (default: physical cores).
	Threads int
	// KVType is the KV cache type, "f32" (default: exact activations) or
	// "f16" (half the memory; K/V rounding shows up as ~1e-3 differences).
	KVType string
	// NSeqMax is the most sequences decoded together (default 1).
	NSeqMax int
	// NoCallback creates the context without the eval callback: it cannot
	// capture or patch (the baseline of benchmarks).
	NoCallback bool
	// Cancel, when set, stops decoding once it is done: a llama_decode
	// under way stops at its next graph node and no other starts; the
	// call returns an error wrapping context.Cause(Cancel) (cancel.go).
	Cancel context.Context
}

func (p *ContextParams) defaults() error {
	if p.NCtx <= 0 {
		p.NCtx = 512
	}
	if p.NBatch <= 0 {
		p.NBatch = p.NCtx
	}
	if p.NUBatch <= 0 {
		p.NUBatch = 512
	}
	p.NUBatch = min(p.NUBatch, p.NBatch)
	if p.Threads <= 0 {
		p.Threads = PhysicalCores()
	}
	// more threads than CPUs only wait for one another (the command line
	// warns when it clamps -t)
	p.Threads, _ = ClampThreads(p.Threads)
	if p.Threads > MaxThreads {
		return fmt.Errorf("%d threads: ggml runs at most %d", p.Threads, MaxThreads)
	}
	for _, n := range []int{p.NCtx, p.NBatch, p.NUBatch} {
		if n > math.MaxInt32 {
			return fmt.Errorf("context, batch and ubatch sizes must be below 2^31, got %d", n)
		}
	}
	if p.NSeqMax <= 0 {
		p.NSeqMax = 1
	}
	if p.NSeqMax > MaxSeqs {
		return fmt.Errorf("at most %d sequences can be decoded together, asked for %d", MaxSeqs, p.NSeqMax)
	}
	switch strings.ToLower(p.KVType) {
	case "", "f32":
		p.KVType = "f32"
	case "f16":
		p.KVType = "f16"
	default:
		return fmt.Errorf("unknown KV cache type %q: use f32 (exact) or f16 (half the memory)", p.KVType)
	}
	return nil
}

// Context is a llama.cpp context with an activation recorder attached. It is
// not safe for concurrent use: serialise Run calls.
type Context struct {
	mu  sync.Mutex
	c   *C.struct_llama_context
	m   *Model
	rec *callbacks.Recorder
	p   ContextParams
	// decodes counts llama_decode calls, for benchmarks and tests
	decodes int
	// cvec is the control-vector state (cvec.go).
	cvec cvecState
	// tp is the context's own CPU thread pool. Without one, ggml creates
	// and joins a pool of threads for every graph it computes, and a
	// capture cuts the graph at every recorded node: one pool per cut.
	tp C.ggml_threadpool_t
	// abort is the C flag llama.cpp's abort callback reads, raised when
	// p.Cancel is done; stopWatch stops watching p.Cancel (cancel.go).
	abort     *C.int
	abortMu   sync.Mutex
	stopWatch func() bool
}

// NewContext creates a context for m.
func (m *Model) NewContext(p ContextParams) (*Context, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return nil, errClosed
	}
	if m.Hooks == nil {
		return nil, fmt.Errorf("%s was loaded vocab-only: it cannot run", m.Path)
	}
	if err := m.checkMemory(p); err != nil {
		return nil, err
	}
	rec := callbacks.New()
	c := m.initContext(p, rec)
	if c == nil {
		rec.Close()
		return nil, fmt.Errorf("llama.cpp could not create a context of %d tokens for %s (out of memory?); run with -v for its log", p.NCtx, m.Path)
	}
	tpp := C.ggml_threadpool_params_default(C.int(p.Threads))
	// Workers spin briefly (poll 1: about a hundred microseconds) before
	// they sleep: long enough to pick up the next piece of a graph cut by
	// a capture without a futex wake-up, short enough that an idle
	// context's workers do not compete with the next context's (poll 0
	// costs 3-5% more per capture; ggml's default 50 spins for tens of
	// milliseconds and made two alternating contexts 30% slower).
	tpp.poll = 1
	tp := C.ggml_threadpool_new(&tpp)
	if tp != nil {
		C.llama_attach_threadpool(c, tp, tp)
	}
	ctx := &Context{c: c, m: m, rec: rec, p: p, tp: tp}
	ctx.watchCancel()
	return ctx, nil
}

// initContext creates the llama.cpp context for p with rec behind its eval
// callback, or returns nil. m.mu must be held.
func (m *Model) initContext(p ContextParams, rec *callbacks.Recorder) *C.struct_llama_context {
	cp := C.llama_context_default_params()
	cp.n_ctx = C.uint32_t(p.NCtx)
	cp.n_batch = C.uint32_t(p.NBatch)
	cp.n_ubatch = C.uint32_t(p.NUBatch)
	cp.n_seq_max = C.uint32_t(p.NSeqMax)
	cp.n_threads = C.int32_t(p.Threads)
	cp.n_threads_batch = C.int32_t(p.Threads)
	cp.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_DISABLED
	cp.no_perf = true
	// One KV stream for all sequences: llama.cpp then splits batches into
	// ubatches in batch order, which is how rows are matched to tokens.
	cp.kv_unified = true
	if p.KVType == "f16" {
		cp.type_k, cp.type_v = C.GGML_TYPE_F16, C.GGML_TYPE_F16
	} else {
		cp.type_k, cp.type_v = C.GGML_TYPE_F32, C.GGML_TYPE_F32
	}
	if !p.NoCallback {
		fn, ud := rec.EvalCallback()
		cp.cb_eval = C.ggml_backend_sched_eval_callback(fn)
		cp.cb_eval_user_data = ud
	}
	return C.llama_init_from_model(m.c, cp)
}

// rebuild replaces c's llama.cpp context by a new one with the same
// parameters, recorder and thread pool: an empty KV cache and no compute
// graph to reuse. c.mu must be held.
func (c *Context) rebuild() error {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if c.m.c == nil {
		return errClosed
	}
	nc := c.m.initContext(c.p, c.rec)
	if nc == nil {
		return fmt.Errorf("llama.cpp could not recreate the context of %d tokens for %s (out of memory?)", c.p.NCtx, c.m.Path)
	}
	C.llama_free(c.c)
	c.c = nc
	if c.tp != nil {
		C.llama_attach_threadpool(c.c, c.tp, c.tp)
	}
	c.setAbortCallback()
	c.decodes = 0
	return nil
}

// Params returns the context's parameters with defaults filled in.
func (c *Context) Params() ContextParams { return c.p }

// NCtx returns the context size llama.cpp allocated.
func (c *Context) NCtx() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return 0
	}
	return int(C.llama_n_ctx(c.c))
}

// Close frees the context. A second Close does nothing.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		C.llama_free(c.c)
		c.c = nil
		if c.tp != nil {
			C.ggml_threadpool_free(c.tp)
			c.tp = nil
		}
		c.rec.Close()
		c.unwatchCancel()
	}
	return nil
}

// CallbackStats returns how often the eval callback was asked about a
// graph node and how often it accepted one, over the context's life. The
// recorder itself stays inside the context: nothing outside can reach it
// while a decode runs.
func (c *Context) CallbackStats() (asked, accepted int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.Stats()
}

// RunOptions configure Run.
type RunOptions struct {
	// Hooks to capture; none captures nothing (logits are always returned).
	Hooks []models.Hook
	// NoLogits asks llama.cpp for the logits of each sequence's last token
	// only and returns none, as a plain prompt evaluation does. It cannot be
	// combined with hooks: llama.cpp then cuts the last layer to one row.
	NoLogits bool
	// Keep leaves the recorder's selection and patches as they are: Run
	// then neither selects Hooks nor resets patches (for patching runs set
	// up through Recorder). It cannot be combined with Patches.
	Keep bool
	// Patches[i] are the activation patches applied while sequence i is
	// decoded (see Patch); missing or nil entries patch nothing. A hook
	// that is both captured and patched is returned as patched: the cache
	// holds the values the later nodes saw. Patching needs the logits of
	// every position, so it cannot be combined with NoLogits.
	Patches [][]Patch
}

// Run decodes independent token sequences and returns one cache per
// sequence holding the captured hooks and the logits of every position.
// Sequences are decoded NSeqMax at a time as separate sequences of one
// batch (never padded into one row); the KV cache is cleared before each
// group.
func (c *Context) Run(seqs [][]int32, o RunOptions) ([]*models.Cache, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, fmt.Errorf("llamacpp: context is closed")
	}
	return c.run(seqs, o)
}

// checkSeqs checks that every sequence is non-empty, fits the context and
// holds vocabulary ids.
func (c *Context) checkSeqs(seqs [][]int32) error {
	nVocab := c.m.nVocab
	for i, s := range seqs {
		if len(s) == 0 {
			return fmt.Errorf("sequence %d is empty: give at least one token", i)
		}
		if len(s) > c.p.NCtx {
			return fmt.Errorf("sequence %d has %d tokens but the context holds %d: pass a larger context (-c %d)", i, len(s), c.p.NCtx, roundUp(len(s), 256))
		}
		if err := c.m.checkImageIDs(i, s); err != nil { // mtmd.go
			return err
		}
		for _, t := range s {
			if t < 0 && visionOf(c.m) != nil {
				continue // an image position, checked above
			}
			if t < 0 || int(t) >= nVocab {
				return fmt.Errorf("sequence %d has token id %d outside the vocabulary (0..%d)", i, t, nVocab-1)
			}
		}
	}
	return nil
}

// run is Run with c.mu held.
func (c *Context) run(seqs [][]int32, o RunOptions) ([]*models.Cache, error) {
	if err := c.checkSeqs(seqs); err != nil {
		return nil, err
	}
	if len(o.Patches) > len(seqs) {
		return nil, fmt.Errorf("llamacpp: patches for %d sequences but %d sequences to run", len(o.Patches), len(seqs))
	}
	var ns nodeSlots
	hookSlot, err := c.hookSlots(&ns, o.Hooks)
	if err != nil {
		return nil, err
	}
	captures := len(ns.nodes) > 0
	patches := make([][]resolvedPatch, len(seqs))
	for i, ps := range o.Patches {
		if patches[i], err = c.resolvePatches(&ns, ps, len(seqs[i])); err != nil {
			return nil, fmt.Errorf("sequence %d: %w", i, err)
		}
	}
	patching := false
	for _, ps := range patches {
		patching = patching || len(ps) > 0
	}
	if o.NoLogits && len(ns.nodes) > 0 {
		return nil, fmt.Errorf("llamacpp: NoLogits cannot be combined with hooks or patches: the last layer would have one row")
	}
	if len(ns.nodes) > 0 && c.p.NoCallback {
		return nil, fmt.Errorf("llamacpp: this context was created without the eval callback and cannot capture or patch")
	}
	if o.Keep && patching {
		return nil, fmt.Errorf("llamacpp: Keep leaves the recorder as it is and cannot be combined with Patches")
	}
	if !o.Keep {
		if err := c.rec.Select(ns.nodes); err != nil {
			return nil, err
		}
		// patch-only runs copy nothing
		c.rec.SetRecord(captures)
	}
	out := make([]*models.Cache, len(seqs))
	for start := 0; start < len(seqs); {
		end, total := c.nextGroup(seqs, start)
		caches, err := c.runGroup(seqs[start:end], patches[start:end], total, o, hookSlot)
		if err != nil {
			return nil, err
		}
		copy(out[start:end], caches)
		start = end
	}
	return out, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// nodeSlots gives each distinct graph node of a run one recorder slot, in
// the order the nodes are first asked for; nodes is the recorder's
// selection.
type nodeSlots struct {
	nodes  []models.Node
	slotOf map[models.Node]int
}

// slot returns the slot of n, adding n if it has none yet.
func (ns *nodeSlots) slot(n models.Node) int {
	s, ok := ns.slotOf[n]
	if !ok {
		if ns.slotOf == nil {
			ns.slotOf = map[models.Node]int{}
		}
		s = len(ns.nodes)
		ns.slotOf[n] = s
		ns.nodes = append(ns.nodes, n)
	}
	return s
}

// hookSlots checks hooks against the model and returns the slot of each
// hook's node in ns, or -1 for logits, which come from llama.cpp's output
// buffer.
func (c *Context) hookSlots(ns *nodeSlots, hooks []models.Hook) ([]int, error) {
	hookSlot := make([]int, len(hooks))
	for i, h := range hooks {
		if h.Kind == models.Logits {
			hookSlot[i] = -1
			continue
		}
		n, ok := c.m.Hooks.Node(h)
		if !ok {
			return nil, fmt.Errorf("the %s architecture has no hook %s", c.m.Arch(), h.Name())
		}
		if h.Kind.PerLayer() && (h.Layer < 0 || h.Layer >= c.m.NLayer()) {
			return nil, fmt.Errorf("hook %s: layer out of range, the model has %d layers", h.Name(), c.m.NLayer())
		}
		hookSlot[i] = ns.slot(n)
	}
	return hookSlot, nil
}

// nextGroup returns the end of the group of sequences decoded together
// from seqs[start] on, at most NSeqMax sequences whose tokens fit the
// context, and its token count.
func (c *Context) nextGroup(seqs [][]int32, start int) (end, total int) {
	end = start
	for end < len(seqs) && end-start < c.p.NSeqMax && total+len(seqs[end]) <= c.p.NCtx {
		total += len(seqs[end])
		end++
	}
	return end, total
}

func (c *Context) runGroup(seqs [][]int32, patches [][]resolvedPatch, total int, o RunOptions, hookSlot []int) ([]*models.Cache, error) {
	C.llama_memory_clear(C.llama_get_memory(c.c), true)
	c.rec.Reset()
	nVocab := c.m.nVocab
	caches := make([]*models.Cache, len(seqs))
	for i, s := range seqs {
		caches[i] = models.NewCache(append([]int32(nil), s...), c.m.NLayer())
	}
	var logits [][]float32
	if !o.NoLogits {
		logits = make([][]float32, len(seqs))
		for i, s := range seqs {
			logits[i] = make([]float32, len(s)*nVocab)
		}
	}
	// flat token order: sequence by sequence; every token asks for logits
	// unless NoLogits: otherwise llama.cpp cuts the last layer down to the
	// rows that output
	b := tokBatch{toks: make([]batchTok, 0, total)}
	for si, s := range seqs {
		b.add(s, 0, si, !o.NoLogits, patches[si])
	}
	flat := b.toks
	var want map[int]int
	if !o.Keep {
		var err error
		if want, err = c.installPatches(b.pseqs, total); err != nil {
			return nil, err
		}
	}
	err := c.decode(flat, func(i int, row []float32) {
		if logits != nil {
			t := flat[i]
			copy(logits[t.seq][t.pos*nVocab:(t.pos+1)*nVocab], row)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := c.checkPatched(want); err != nil {
		return nil, err
	}
	// split the recorded rows of each slot by sequence; the rows of all
	// slots go into one allocation (one zeroing and one growth of the heap
	// instead of one per hook)
	slotRows := map[int][]float32{}
	slotWidth := map[int]int{}
	var slots []int
	size := 0
	for _, s := range hookSlot {
		if _, done := slotWidth[s]; done || s < 0 {
			continue
		}
		node := c.rec.Node(s)
		err := c.rec.View(s, func(w int, data []float32) error {
			if w == 0 || len(data) != w*total {
				return fmt.Errorf("capture of node %s recorded %d values of width %d for %d tokens; the graph of this llama.cpp build does not match lldiff's hook table (run with -v)",
					node, len(data), w, total)
			}
			slotWidth[s] = w
			return nil
		})
		if err != nil {
			return nil, err
		}
		slots = append(slots, s)
		size += slotWidth[s] * total
	}
	slab := make([]float32, size)
	for _, s := range slots {
		n := slotWidth[s] * total
		dst := slab[:n:n]
		slab = slab[n:]
		if err := c.rec.View(s, func(w int, data []float32) error {
			copy(dst, data)
			return nil
		}); err != nil {
			return nil, err
		}
		slotRows[s] = dst
	}
	for i, h := range o.Hooks {
		s := hookSlot[i]
		if s < 0 {
			continue
		}
		data, w := slotRows[s], slotWidth[s]
		off := 0
		for si, seq := range seqs {
			n := len(seq) * w
			caches[si].Set(&models.Activation{Hook: h, Width: w, Data: data[off : off+n : off+n]})
			off += n
		}
	}
	// a captured hook that was patched holds the patched rows, as every
	// later node saw them
	for si, ps := range patches {
		for _, p := range ps {
			for i, h := range o.Hooks {
				if hookSlot[i] != p.slot {
					continue
				}
				a, _ := caches[si].At(h)
				for j, q := range p.positions {
					copy(a.Row(q), p.values[j*p.width:(j+1)*p.width])
				}
			}
		}
	}
	if logits != nil {
		// logits are set last: a Logits hook always means these
		for si := range seqs {
			caches[si].Set(&models.Activation{Hook: models.Hook{Kind: models.Logits, Layer: -1}, Width: nVocab, Data: logits[si]})
		}
	}
	return caches, nil
}

// batchTok is one token of a llama_batch: its id, position, sequence and
// whether llama.cpp should return its logits.
type batchTok struct {
	tok    int32
	pos    int
	seq    int
	logits bool
}

// tokBatch gathers the tokens of one decode and where their patches go.
type tokBatch struct {
	toks  []batchTok
	pseqs []patchSeq
}

// add appends the tokens of s from position from on as sequence seq, all
// asking for logits when allLogits is set and only the last one otherwise,
// and places the sequence's patches on their rows.
func (b *tokBatch) add(s []int32, from, seq int, allLogits bool, patches []resolvedPatch) {
	if len(patches) > 0 {
		b.pseqs = append(b.pseqs, patchSeq{row0: len(b.toks), pos0: from, n: len(s) - from, patches: patches})
	}
	for p := from; p < len(s); p++ {
		b.toks = append(b.toks, batchTok{tok: s[p], pos: p, seq: seq, logits: allLogits || p == len(s)-1})
	}
}

// decode feeds toks to llama_decode, NBatch at a time, and calls out with
// the index in toks and the logits of every token that asked for them. The
// logits slice is llama.cpp's and valid only during the call.
func (c *Context) decode(toks []batchTok, out func(i int, logits []float32)) error {
	if hasImages(toks) {
		return c.decodeImages(toks, out) // mtmd.go
	}
	nVocab := c.m.nVocab
	batch := C.llama_batch_init(C.int32_t(min(c.p.NBatch, len(toks))), 0, 1)
	defer C.llama_batch_free(batch)
	for b0 := 0; b0 < len(toks); b0 += c.p.NBatch {
		b1 := min(b0+c.p.NBatch, len(toks))
		n := b1 - b0
		ids := unsafe.Slice(batch.token, n)
		pos := unsafe.Slice(batch.pos, n)
		nseq := unsafe.Slice(batch.n_seq_id, n)
		seqIDs := unsafe.Slice(batch.seq_id, n)
		outs := unsafe.Slice(batch.logits, n)
		for i := range n {
			t := toks[b0+i]
			ids[i] = C.llama_token(t.tok)
			pos[i] = C.llama_pos(t.pos)
			nseq[i] = 1
			*seqIDs[i] = C.llama_seq_id(t.seq)
			outs[i] = 0
			if t.logits {
				outs[i] = 1
			}
		}
		batch.n_tokens = C.int32_t(n)
		if err := c.cancelled(); err != nil {
			return err
		}
		ret := C.llama_decode(c.c, batch)
		c.decodes++
		if err := c.cancelled(); ret == 2 && err != nil {
			return err
		}
		if err := c.rec.Err(); err != nil {
			return err
		}
		switch {
		case ret == 1:
			return fmt.Errorf("llama.cpp found no room in the KV cache for %d tokens (context %d): pass a larger context (-c)", len(toks), c.p.NCtx)
		case ret != 0:
			return fmt.Errorf("llama_decode failed with status %d; run with -v for llama.cpp's log", int(ret))
		}
		for i := range n {
			if !toks[b0+i].logits {
				continue
			}
			p := C.llama_get_logits_ith(c.c, C.int32_t(i))
			if p == nil {
				return fmt.Errorf("llama.cpp returned no logits for token %d", b0+i)
			}
			out(b0+i, unsafe.Slice((*float32)(unsafe.Pointer(p)), nVocab))
		}
	}
	return nil
}
