package llamacpp

import (
	"github.com/lldiff/lldiff/models"
)

// EngineParams configure an Engine.
type EngineParams struct {
	// Context configures the contexts of the engine's runners. NCtx 0
	// sizes each context for the sequences it runs (a multiple of 256, at
	// least 256); NSeqMax is set by each runner.
	Context ContextParams
	// Unembed configures the engine's logit lens.
	Unembed UnembedOptions
}

// Engine is a loaded model with the parameters of its contexts: the
// models.Engine the analyses run on. It does not own the model.
type Engine struct {
	m *Model
	p EngineParams
}

var (
	_ models.Engine    = (*Engine)(nil)
	_ models.Generator = runner{}
)

// NewEngine returns an engine running m with p.
func NewEngine(m *Model, p EngineParams) *Engine { return &Engine{m: m, p: p} }

// Model returns the engine's model.
func (e *Engine) Model() *Model { return e.m }

// Path returns the model file.
func (e *Engine) Path() string { return e.m.Path }

// ModelInfo returns the hyperparameters.
func (e *Engine) ModelInfo() *models.Info { return e.m.Info }

// HookTable returns the model's hook table.
func (e *Engine) HookTable() *models.HookTable { return e.m.Hooks }

// HookWidth returns the width of hook h's rows.
func (e *Engine) HookWidth(h models.Hook) int { return e.m.HookWidth(h) }

// Tokenize converts text to token ids.
func (e *Engine) Tokenize(text string, o models.TokenizeOptions) ([]int32, error) {
	return e.m.Tokenize(text, o)
}

// Piece returns the bytes token id stands for in decoded text.
func (e *Engine) Piece(id int32) []byte { return e.m.Piece(id) }

// Text returns the token's vocabulary entry.
func (e *Engine) Text(id int32) string { return e.m.Text(id) }

// Kind returns the token's kind.
func (e *Engine) Kind(id int32) models.TokenKind { return e.m.Kind(id) }

// Printable returns a one-line form of the token.
func (e *Engine) Printable(id int32) string { return e.m.Printable(id) }

// NVocab returns the vocabulary size.
func (e *Engine) NVocab() int { return e.m.NVocab() }

// NewRunner returns a runner on a context sized by NewContext.
func (e *Engine) NewRunner(seqs [][]int32, nSeq int) (models.Runner, error) {
	c, err := e.NewContext(seqs, nSeq)
	if err != nil {
		return nil, err
	}
	return runner{c}, nil
}

// NewContext returns a context that holds seqs decoded nSeq at a time: the
// context size of the parameters, or when that is 0 the most tokens of
// nSeq consecutive sequences rounded up to 256. A sequence the context or
// the model cannot hold is a *models.ContextError.
func (e *Engine) NewContext(seqs [][]int32, nSeq int) (*Context, error) {
	m := e.m
	p := e.p.Context
	longest := maxLen(seqs)
	cerr := func(pr models.ContextProblem, limit int) error {
		return &models.ContextError{Problem: pr, Tokens: longest, NCtx: p.NCtx, Limit: limit, Path: m.Path, Arch: m.Arch()}
	}
	n := p.NCtx
	if n == 0 {
		n = max(256, models.RoundCtx(GroupTokens(seqs, nSeq)))
	} else if longest > n {
		return nil, cerr(models.PromptTooLong, 0)
	}
	if tr := m.Info.NCtxTrain; m.Info.LearnedPositions && longest > tr {
		// a position past the learned embedding does not exist: llama.cpp
		// would read past the end of position_embd.weight
		return nil, cerr(models.PastLearnedPositions, tr)
	}
	if tr := m.Info.NCtxTrain; tr > 0 && longest > tr && p.NCtx == 0 {
		return nil, cerr(models.PastTrainedContext, tr)
	}
	p.NCtx, p.NSeqMax = n, nSeq
	return m.NewContext(p)
}

// NewUnembedder returns the model's logit lens.
func (e *Engine) NewUnembedder() (models.Unembedder, error) {
	return e.m.NewUnembedderWith(e.p.Unembed)
}

// runner is a Context seen as a models.Runner.
type runner struct{ c *Context }

func (r runner) Run(seqs [][]int32, hooks []models.Hook) ([]*models.Cache, error) {
	return r.c.Run(seqs, RunOptions{Hooks: hooks})
}

func (r runner) RunRows(seqs [][]int32, pos [][]int, hooks []models.Hook) ([]*models.SeqRows, error) {
	return r.c.RunRows(seqs, pos, hooks)
}

func (r runner) Patch(base []int32, variants [][]models.Patch, o models.PatchOptions) (*models.PatchResult, error) {
	return r.c.Patch(base, variants, o)
}

func (r runner) Close() error { return r.c.Close() }

func (r runner) SetControlVector(dirs [][]float32) error { return r.c.SetControlVector(dirs) }

func (r runner) Generate(prompt []int32, o models.GenerateOptions) (*models.Generation, error) {
	return r.c.Generate(prompt, o)
}

// GroupTokens returns the most tokens of nSeq consecutive sequences, the
// groups in which seqs are decoded together.
func GroupTokens(seqs [][]int32, nSeq int) int {
	need := 0
	for i := 0; i < len(seqs); i += max(nSeq, 1) {
		tot := 0
		for _, s := range seqs[i:min(i+max(nSeq, 1), len(seqs))] {
			tot += len(s)
		}
		need = max(need, tot)
	}
	return need
}

func maxLen(seqs [][]int32) int {
	n := 0
	for _, s := range seqs {
		n = max(n, len(s))
	}
	return n
}
