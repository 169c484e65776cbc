package models

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/lldiff/lldiff/internal/safetext"
)

// This file is the engine interface: what the analyses (package analysis)
// need from something that runs a model. Two packages implement it:
// llamacpp (cgo, llama.cpp) and models/reference (plain Go, slow, for
// tests). It lives here, at the bottom of the house, so that both can
// implement it without importing anything above them, and holds only the
// plain types their methods take.

// Engine is a loaded model ready to run: its description, its tokenizer,
// and factories for runners and unembedders. Runners and unembedders must
// be closed; the Engine's owner closes the model.
type Engine interface {
	Vocab
	// Path names the model (its file), for messages and reports.
	Path() string
	// ModelInfo returns the hyperparameters.
	ModelInfo() *Info
	// HookTable maps hook names to the engine's activations.
	HookTable() *HookTable
	// HookWidth returns the width of hook h's rows: n_head×d_head for z,
	// n_vocab for logits, d_model otherwise.
	HookWidth(h Hook) int
	// NewRunner returns a runner sized for seqs decoded nSeq at a time.
	// When the sequences do not fit, the error is a *ContextError.
	NewRunner(seqs [][]int32, nSeq int) (Runner, error)
	// NewUnembedder returns the model's logit lens.
	NewUnembedder() (Unembedder, error)
}

// Vocab is a model's tokenizer.
type Vocab interface {
	Tokenize(text string, o TokenizeOptions) ([]int32, error)
	// Piece returns the bytes token id stands for in decoded text.
	Piece(id int32) []byte
	// Text returns the token's vocabulary entry as stored ("▁happy").
	Text(id int32) string
	// Kind classifies the token.
	Kind(id int32) TokenKind
	// Printable returns a one-line form of the token that hides nothing
	// (see PrintableBytes).
	Printable(id int32) string
	// NVocab returns the vocabulary size.
	NVocab() int
}

// Runner decodes token sequences on one context. It is not safe for
// concurrent use.
type Runner interface {
	// Run decodes independent sequences and returns one cache per
	// sequence with the hooks asked for and the logits of every position.
	Run(seqs [][]int32, hooks []Hook) ([]*Cache, error)
	// RunRows decodes as Run but keeps only the rows at positions pos[i] of
	// sequence i; their logits only when hooks include the Logits hook.
	RunRows(seqs [][]int32, pos [][]int, hooks []Hook) ([]*SeqRows, error)
	// Patch runs base once and once per variant with that variant's
	// patches, and returns the logits at o.Logits (see llamacpp's
	// Context.Patch for the fast path).
	Patch(base []int32, variants [][]Patch, o PatchOptions) (*PatchResult, error)
	Close() error
}

// Generator is a Runner that also generates text greedily and steers it
// with a control vector: what `lldiff steer` needs. Runners that can do it
// implement it (both engines' do); analysis.Steer asks a runner for it
// and returns a *NotSupportedError when it is missing.
type Generator interface {
	Runner
	// SetControlVector makes every later decode, Run and Generate alike,
	// add dirs[l] to the output of layer l (resid_post.l) at every token,
	// as llama.cpp's --control-vector adds direction.l. dirs has at most
	// n_layer entries of d_model finite values; a nil or missing entry
	// adds nothing, and dirs[0] must be nil or zero (llama.cpp never adds
	// at layer 0). The runner keeps no reference to dirs. Zero vectors
	// turn steering off (x + 0 is x exactly).
	SetControlVector(dirs [][]float32) error
	// Generate decodes prompt and then appends the most likely token
	// (greedy; ties go to the lower id, NaN never wins), up to o.N tokens.
	Generate(prompt []int32, o GenerateOptions) (*Generation, error)
}

// ControlVectorLayers checks dirs against the rules of
// Generator.SetControlVector for a model of nLayer layers of width d (at
// most nLayer entries of d finite values each, nothing at layer 0) and
// returns the layers whose vector is not all zero, in order. Both engines
// apply it, so they refuse the same vectors with the same words.
func ControlVectorLayers(dirs [][]float32, nLayer, d int) ([]int, error) {
	if len(dirs) > nLayer {
		return nil, fmt.Errorf("control vector for %d layers, the model has %d", len(dirs), nLayer)
	}
	var layers []int
	for l, v := range dirs {
		if v == nil {
			continue
		}
		if len(v) != d {
			return nil, fmt.Errorf("control vector for layer %d has %d values, the model's d_model is %d", l, len(v), d)
		}
		nonzero := false
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("control vector for layer %d: value %d is %v", l, i, x)
			}
			nonzero = nonzero || x != 0
		}
		if !nonzero {
			continue
		}
		if l == 0 {
			return nil, fmt.Errorf("control vector for layer 0: llama.cpp never adds a vector to layer 0 (resid_post.0); start at layer 1")
		}
		layers = append(layers, l)
	}
	return layers, nil
}

// GenerateOptions configure Generator.Generate.
type GenerateOptions struct {
	// N is the most tokens to generate.
	N int
	// StopAtEOG ends generation after an end-of-generation token (EOS,
	// EOT), which is kept in Tokens.
	StopAtEOG bool
	// KeepLogits keeps the logits of every step in Generation.Logits
	// (N × n_vocab floats); the first step's are always kept.
	KeepLogits bool
}

// Generation is what Generate produced.
type Generation struct {
	Prompt []int32
	// Tokens are the generated tokens.
	Tokens []int32
	// First holds the logits of the next token after the prompt: the
	// distribution that chose Tokens[0].
	First []float32
	// Logits[i] holds the logits that chose Tokens[i], with KeepLogits.
	Logits [][]float32
}

// NotSupportedError says that an engine cannot do what an analysis needs
// (an engine whose runners are no Generator cannot steer).
type NotSupportedError struct {
	// Engine names the engine (its model path), What the missing
	// capability ("generation with a control vector").
	Engine, What string
}

func (e *NotSupportedError) Error() string {
	return fmt.Sprintf("the engine running %s does not support %s", e.Engine, e.What)
}

// Unembedder is the logit lens: the final norm (in mode) and W_U applied
// to n rows of x (n × d_model), written to dst as n × n_vocab logits.
type Unembedder interface {
	Unembed(dst, x []float32, n int, mode LensMode) ([]float32, error)
	Close() error
}

// TokenizeOptions configure Tokenize.
type TokenizeOptions struct {
	// BOS chooses whether a beginning-of-sequence token is prepended:
	// BOSAuto follows the model (tokenizer.ggml.add_bos_token).
	BOS BOSMode
	// ParseSpecial makes text such as "<s>" a control token instead of
	// plain characters.
	ParseSpecial bool
}

// BOSMode says whether to add a BOS token.
type BOSMode int

// BOS modes.
const (
	BOSAuto BOSMode = iota
	BOSYes
	BOSNo
)

// TokenKind classifies a token.
type TokenKind string

// Token kinds.
const (
	KindNormal  TokenKind = "normal"
	KindControl TokenKind = "control" // <s>, </s>, <|endoftext|>
	KindByte    TokenKind = "byte"    // SentencePiece byte fallback <0xNN>
	KindUnknown TokenKind = "unknown"
	KindUser    TokenKind = "user"
	// KindUnused tokens are reserved rows no text produces (Gemma's
	// <unused0>…, the padding of synthetic vocabularies); llama.cpp decodes
	// them to nothing, so they are shown by their text
	KindUnused TokenKind = "unused"
)

// PrintableBytes renders decoded token bytes on one line, hiding nothing:
// spaces as "▁", newlines and tabs as \n and \t, bytes that are not valid
// UTF-8 and control characters as <0xNN>, the other characters a terminal
// would obey rather than show (C1 controls, bidirectional overrides; see
// safetext.Unsafe) as <U+NNNN>, nothing as "∅".
func PrintableBytes(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&sb, "<0x%02X>", b[0])
		case r == ' ':
			sb.WriteString("▁")
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, "<0x%02X>", r)
		case safetext.Unsafe(r):
			fmt.Fprintf(&sb, "<U+%04X>", r)
		default:
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	if sb.Len() == 0 {
		return "∅"
	}
	return sb.String()
}

// AsksLogits reports whether hooks include the Logits hook: only then does
// RunRows copy the logits into SeqRows.Logits.
func AsksLogits(hooks []Hook) bool {
	return slices.ContainsFunc(hooks, func(h Hook) bool { return h.Kind == Logits })
}

// SeqRows holds the activations of one sequence at chosen positions.
type SeqRows struct {
	// Positions are the positions asked for, in the order asked.
	Positions []int
	// Acts holds each hook's rows: row k is the activation at
	// Positions[k].
	Acts map[Hook]*Activation
	// Logits holds the logits at each of the positions (row k at
	// Positions[k]) when the hooks asked for included the Logits hook,
	// and is nil otherwise: copying a vocabulary's worth of floats per row
	// out of the engine cost contrast a tenth of its time.
	Logits *Activation
}

// Cache returns the rows as a cache over tokens (the whole sequence) whose
// row k is the activation at position Positions[k], logits included.
func (r *SeqRows) Cache(tokens []int32, nLayer int) *Cache {
	c := NewCache(tokens, nLayer)
	for _, a := range r.Acts {
		c.Set(a)
	}
	if r.Logits != nil {
		c.Set(&Activation{Hook: Hook{Kind: Logits, Layer: -1}, Width: r.Logits.Width, Data: r.Logits.Data})
	}
	return c
}

// Patch replaces rows of one activation while a sequence is decoded:
// activation patching. Hooks that are one activation (resid_pre of layer
// L+1 and resid_post of layer L) are patched together.
type Patch struct {
	Hook Hook
	// Positions are the token positions to replace; nil replaces every
	// position of the sequence.
	Positions []int
	// Values holds the replacement rows, one per position in the order of
	// Positions (len(Positions)×width floats), or one per position of the
	// sequence when Positions is nil. The width is d_model, or
	// n_head×d_head for z (see Engine.HookWidth).
	Values []float32
}

// PatchOptions configure Runner.Patch.
type PatchOptions struct {
	// Logits are the positions of the base sequence whose logits are
	// returned, for the base and for every variant (default: the last).
	Logits []int
	// Plain decodes every variant from position 0 as its own sequence, the
	// KV cache cleared in between: the slow path the fast one is checked
	// against.
	Plain bool
	// Parallel is the most variants decoded together as separate sequences
	// of one batch (default and maximum: the context's NSeqMax−1, one
	// sequence holding the base). The context must also hold the base plus
	// the recomputed tokens of the variants decoded together.
	Parallel int
	// Progress, when set, is called after each decode with the number of
	// variants done and the total.
	Progress func(done, total int)
}

// PatchResult holds the logits of a Patch call.
type PatchResult struct {
	// Base holds the logits of the unpatched base sequence at the
	// positions of PatchOptions.Logits, len(Logits)×n_vocab floats.
	Base []float32
	// Variants[i] holds the logits of variant i at the same positions.
	Variants [][]float32
	// Tokens is the number of tokens decoded, the base included.
	Tokens int
	// Decodes is the number of decode calls.
	Decodes int
}

// ContextError says that sequences do not fit an engine's context. The
// engine knows the sizes; the command line turns them into advice about
// its flags (-c).
type ContextError struct {
	Problem ContextProblem
	// Tokens is the longest sequence, NCtx the context size asked for (0:
	// sized by the engine), Limit the model's limit (NCtxTrain).
	Tokens, NCtx, Limit int
	// Path and Arch name the model.
	Path, Arch string
}

// ContextProblem is why sequences do not fit.
type ContextProblem int

const (
	// PromptTooLong: a sequence is longer than the context asked for.
	PromptTooLong ContextProblem = iota
	// PastLearnedPositions: a sequence is longer than the model's learned
	// position embedding; nothing can run it.
	PastLearnedPositions
	// PastTrainedContext: a sequence is longer than the context the model
	// was trained on, and no context size was asked for.
	PastTrainedContext
)

// RoundCtx rounds a token count up to the context sizes lldiff uses and
// suggests (multiples of 256).
func RoundCtx(n int) int { return (n + 255) / 256 * 256 }

// Error says what does not fit, in the engine's terms; package cli adds
// the flags that change it.
func (e *ContextError) Error() string {
	switch e.Problem {
	case PastLearnedPositions:
		return fmt.Sprintf("a prompt has %d tokens but %s (%s) has learned position embeddings for %d positions only",
			e.Tokens, e.Path, e.Arch, e.Limit)
	case PastTrainedContext:
		return fmt.Sprintf("a prompt has %d tokens but %s was trained on at most %d", e.Tokens, e.Path, e.Limit)
	}
	return fmt.Sprintf("a prompt has %d tokens but the context holds %d", e.Tokens, e.NCtx)
}

// IsContextError reports whether err is or wraps a *ContextError.
func IsContextError(err error) bool {
	var c *ContextError
	return errors.As(err, &c)
}
