package reference

import (
	"fmt"
	"slices"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// Engine is the reference forward pass as a models.Engine: the analyses
// run on it without llama.cpp (CGO_ENABLED=0), slowly and exactly. Each
// sequence is run on its own from position 0; Patch replaces rows with
// RunPatched. Its tokenizer is Vocab's greedy one.
type Engine struct {
	*Vocab
	m     *Model
	path  string
	info  *models.Info
	hooks *models.HookTable
	eog   map[int32]bool // end-of-generation tokens (steer.go)
}

var _ models.Engine = (*Engine)(nil)

// NewEngine loads the model at path (see Load) with its vocabulary.
func NewEngine(path string) (*Engine, error) {
	f, err := models.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Info()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	hooks, err := models.HookTableOf(info)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, err := load(f)
	if err != nil {
		return nil, fmt.Errorf("reference: %s: %w", path, err)
	}
	v, err := NewVocab(f)
	if err != nil {
		return nil, err
	}
	return &Engine{Vocab: v, m: m, path: path, info: info, hooks: hooks, eog: eogTokens(f, info)}, nil
}

// Model returns the reference model.
func (e *Engine) Model() *Model { return e.m }

// Path returns the model file.
func (e *Engine) Path() string { return e.path }

// ModelInfo returns the hyperparameters.
func (e *Engine) ModelInfo() *models.Info { return e.info }

// HookTable returns the architecture's hook table.
func (e *Engine) HookTable() *models.HookTable { return e.hooks }

// HookWidth returns the width of hook h's rows.
func (e *Engine) HookWidth(h models.Hook) int {
	switch h.Kind {
	case models.Z:
		return e.info.NHead * e.info.DHead
	case models.Logits:
		return e.m.Config.NVocab
	}
	return e.info.DModel
}

// NewRunner returns a runner; the reference has no context to size, but
// refuses what llama.cpp's loader would (positions past a learned
// position embedding).
func (e *Engine) NewRunner(seqs [][]int32, nSeq int) (models.Runner, error) {
	longest := 0
	for _, s := range seqs {
		longest = max(longest, len(s))
	}
	if tr := e.info.NCtxTrain; e.info.LearnedPositions && longest > tr {
		return nil, &models.ContextError{Problem: models.PastLearnedPositions, Tokens: longest, Limit: tr, Path: e.path, Arch: e.info.Arch}
	}
	return &runner{e: e}, nil
}

// NewUnembedder returns the logit lens computed from the model's own
// final norm and W_U.
func (e *Engine) NewUnembedder() (models.Unembedder, error) { return unembedder{e.m}, nil }

// runner runs sequences one by one; cvec is the control vector added to
// every run (steer.go).
type runner struct {
	e    *Engine
	cvec [][]float32
}

func (r *runner) Close() error { return nil }

// run runs one sequence and returns a cache of hooks and the logits.
func (r *runner) run(seq []int32, hooks []models.Hook, reps []Replacement) (*models.Cache, error) {
	res, err := r.e.m.RunSteered(seq, reps, r.cvec)
	if err != nil {
		return nil, err
	}
	full := res.Cache()
	c := models.NewCache(full.Tokens, r.e.info.NLayer)
	for _, h := range slices.Concat(hooks, []models.Hook{{Kind: models.Logits, Layer: -1}}) {
		a, ok := full.At(h)
		if !ok {
			return nil, fmt.Errorf("the %s architecture has no hook %s", r.e.info.Arch, h.Name())
		}
		c.Set(&models.Activation{Hook: h, Width: a.Width, Data: a.Data})
	}
	return c, nil
}

func (r *runner) Run(seqs [][]int32, hooks []models.Hook) ([]*models.Cache, error) {
	out := make([]*models.Cache, len(seqs))
	for i, s := range seqs {
		var err error
		if out[i], err = r.run(s, hooks, nil); err != nil {
			return nil, fmt.Errorf("sequence %d: %w", i, err)
		}
	}
	return out, nil
}

func (r *runner) RunRows(seqs [][]int32, pos [][]int, hooks []models.Hook) ([]*models.SeqRows, error) {
	if len(pos) != len(seqs) {
		return nil, fmt.Errorf("reference: RunRows: positions for %d sequences, %d sequences", len(pos), len(seqs))
	}
	caches, err := r.Run(seqs, hooks)
	if err != nil {
		return nil, err
	}
	out := make([]*models.SeqRows, len(seqs))
	for i, c := range caches {
		if len(pos[i]) == 0 {
			return nil, fmt.Errorf("sequence %d: no positions asked for", i)
		}
		for _, p := range pos[i] {
			if p < 0 || p >= len(seqs[i]) {
				return nil, fmt.Errorf("sequence %d: position %d outside its %d tokens", i, p, len(seqs[i]))
			}
		}
		rows := func(a *models.Activation) *models.Activation {
			b := &models.Activation{Hook: a.Hook, Width: a.Width, Data: make([]float32, 0, len(pos[i])*a.Width)}
			for _, p := range pos[i] {
				b.Data = append(b.Data, a.Row(p)...)
			}
			return b
		}
		sr := &models.SeqRows{Positions: append([]int(nil), pos[i]...), Acts: map[models.Hook]*models.Activation{}}
		if models.AsksLogits(hooks) {
			lg, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
			sr.Logits = rows(lg)
		}
		for _, h := range hooks {
			if h.Kind == models.Logits {
				sr.Acts[h] = sr.Logits
				continue
			}
			a, _ := c.At(h)
			sr.Acts[h] = rows(a)
		}
		out[i] = sr
	}
	return out, nil
}

func (r *runner) Patch(base []int32, variants [][]models.Patch, o models.PatchOptions) (*models.PatchResult, error) {
	n := len(base)
	logitPos := o.Logits
	if len(logitPos) == 0 {
		logitPos = []int{n - 1}
	}
	for _, q := range logitPos {
		if q < 0 || q >= n {
			return nil, fmt.Errorf("reference: logits asked at position %d of a sequence of %d tokens", q, n)
		}
	}
	nv := r.e.m.Config.NVocab
	gather := func(c *models.Cache) []float32 {
		lg, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
		out := make([]float32, 0, len(logitPos)*nv)
		for _, q := range logitPos {
			out = append(out, lg.Row(q)...)
		}
		return out
	}
	c, err := r.run(base, nil, nil)
	if err != nil {
		return nil, err
	}
	res := &models.PatchResult{Base: gather(c), Variants: make([][]float32, len(variants)), Tokens: n, Decodes: 1}
	for i, ps := range variants {
		var reps []Replacement
		for _, p := range ps {
			w := r.e.HookWidth(p.Hook)
			positions := p.Positions
			if positions == nil {
				positions = make([]int, n)
				for q := range positions {
					positions[q] = q
				}
			}
			if len(p.Values) != len(positions)*w {
				return nil, fmt.Errorf("variant %d: patch of %s has %d values for %d positions of width %d", i, p.Hook.Name(), len(p.Values), len(positions), w)
			}
			for j, q := range positions {
				reps = append(reps, Replacement{Hook: p.Hook.Name(), Pos: q, Row: p.Values[j*w : (j+1)*w]})
			}
		}
		c, err := r.run(base, nil, reps)
		if err != nil {
			return nil, fmt.Errorf("variant %d: %w", i, err)
		}
		res.Variants[i] = gather(c)
		res.Tokens += n
		res.Decodes++
		if o.Progress != nil {
			o.Progress(i+1, len(variants))
		}
	}
	return res, nil
}

// unembedder is the logit lens of the reference model: its final norm (in
// LensNorm mode) and W_U, in float64 as the rest of the reference.
type unembedder struct{ m *Model }

func (u unembedder) Close() error { return nil }

func (u unembedder) Unembed(dst, x []float32, n int, mode models.LensMode) ([]float32, error) {
	m := u.m
	d, nv := m.Config.DModel, m.Config.NVocab
	if n < 0 || len(x) != n*d {
		return nil, fmt.Errorf("logit lens: %d values are not %d rows of d_model %d", len(x), n, d)
	}
	if !mode.Valid() {
		return nil, fmt.Errorf("logit lens: invalid mode %v", mode)
	}
	if cap(dst) < n*nv {
		dst = make([]float32, n*nv)
	}
	dst = dst[:n*nv]
	for row := range n {
		xr := x[row*d : (row+1)*d]
		var h []float32
		switch {
		case mode == models.LensNorm && m.ln != nil:
			h = layerNorm(xr, m.outputNorm, m.ln.outputNormB, m.Config.NormEps)
		case mode == models.LensNorm:
			h = rmsNorm(xr, m.outputNorm, m.Config.NormEps)
		case mode == models.LensGamma:
			mean := 0.0
			if m.ln != nil {
				for _, v := range xr {
					mean += float64(v)
				}
				mean /= float64(d)
			}
			h = make([]float32, d)
			for i, v := range xr {
				h[i] = float32((float64(v) - mean) * float64(m.outputNorm[i]))
			}
		default:
			h = xr
		}
		out := dst[row*nv : (row+1)*nv]
		for v := range out {
			s := diff.Dot(m.unembed.w[v*d:(v+1)*d], h)
			if mode == models.LensNorm && m.unembed.b != nil {
				s += float64(m.unembed.b[v])
			}
			out[v] = float32(s)
		}
		if mode == models.LensNorm && m.gemma != nil && m.gemma.finalSoftcap > 0 {
			models.Softcap(out, m.gemma.finalSoftcap)
		}
	}
	return dst, nil
}
