package analysis

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// CompareOptions configure Compare.
type CompareOptions struct {
	// Model names the model in the result (the path as the user gave it).
	Model string
	// A and B are the prompts.
	A, B     string
	Tokenize models.TokenizeOptions
	// Positions says which positions are compared, in diff.ParsePositions'
	// notation ("last", "-1", "all", "5:6"); it is resolved against the
	// token counts once the prompts are tokenized.
	Positions string
	// Kinds are the per-layer kinds ranked; the model must have them.
	Kinds []models.Kind
	// Sort is the ranking order of diff.Rank: "rel", "l2" or "cosine".
	Sort string
	// TopK predictions per prompt, LensK tokens per lens cell, Neurons
	// dimensions of the most different component; each at least 1.
	TopK, LensK, Neurons int
	// Lens is the lens normalisation of differences.
	Lens models.LensMode
	// Answers are continuations to score after each prompt.
	Answers []string
	// NoLens skips the logit lens (the result's lens is empty, and the
	// summary says nothing about it): on a 256k vocabulary the lens of
	// every layer costs more than the prompts' decode.
	NoLens bool
}

// CompareResult is the document `compare --json` prints
// (docs/compare-json.md).
type CompareResult struct {
	Model string `json:"model"`
	// Summary says in words what differs, from the numbers below.
	Summary    *Summary        `json:"summary"`
	Positions  []PosPair       `json:"positions"`
	Warnings   []string        `json:"warnings"`
	Prompts    [2]Prompt       `json:"prompts"`
	Components []Component     `json:"components"`
	LensNorm   string          `json:"lens_norm"`
	Lens       []LensLayer     `json:"lens"`
	Neurons    *NeuronsResult  `json:"neurons,omitempty"`
	Answers    []AnswerResult  `json:"answers,omitempty"`
	Layers     []diff.LayerRow `json:"-"` // the per-layer view of the components (not in the JSON)
}

// PosPair is a compared pair of positions.
type PosPair struct {
	A int `json:"a"`
	B int `json:"b"`
}

// Prompt is one prompt of a comparison.
type Prompt struct {
	Text   string  `json:"text"`
	Tokens []Token `json:"tokens"`
	// Pos is the position whose predictions Top lists.
	Pos int         `json:"pos"`
	Top []PredToken `json:"top"`
}

// PredToken is a predicted next token.
type PredToken struct {
	ID    int32   `json:"id"`
	Piece string  `json:"piece"`
	Prob  float64 `json:"prob"`
	Logit float64 `json:"logit"`
}

// Component is one ranked component.
type Component struct {
	Hook   string  `json:"hook"`
	Short  string  `json:"short"`
	Layer  int     `json:"layer"`
	Kind   string  `json:"kind"`
	L2     float64 `json:"l2"`
	RelL2  float64 `json:"rel_l2"`
	Cosine float64 `json:"cosine"`
	NormA  float64 `json:"norm_a"`
	NormB  float64 `json:"norm_b"`
}

// LensToken is a token of a logit-lens cell.
type LensToken struct {
	Piece string  `json:"piece"`
	ID    int32   `json:"id"`
	Value float64 `json:"value"`
}

// LensLayer is the logit lens of resid_post at one layer.
type LensLayer struct {
	Layer   int         `json:"layer"`
	Hook    string      `json:"hook"`
	A       []LensToken `json:"a"`
	B       []LensToken `json:"b"`
	AMinusB []LensToken `json:"a_minus_b"`
	BMinusA []LensToken `json:"b_minus_a"`
}

// NeuronsResult lists the dimensions of the most different component.
type NeuronsResult struct {
	Hook    string   `json:"hook"`
	Pos     PosPair  `json:"pos"`
	Neurons []Neuron `json:"neurons"`
}

// Neuron is one dimension in A and B.
type Neuron struct {
	Index int     `json:"index"`
	A     float64 `json:"a"`
	B     float64 `json:"b"`
	Diff  float64 `json:"diff"`
}

// AnswerResult is one scored answer.
type AnswerResult struct {
	Text   string        `json:"text"`
	Tokens []Token       `json:"tokens"`
	Note   string        `json:"note,omitempty"`
	A      []AnswerScore `json:"a"`
	B      []AnswerScore `json:"b"`
	// LogProbA and LogProbB are the log-probabilities of the whole answer.
	LogProbA float64 `json:"logprob_a"`
	LogProbB float64 `json:"logprob_b"`
}

// Compare runs prompts A and B as two sequences, captures o.Kinds and
// resid_post at every layer at the compared positions, and returns the
// tokens, predictions, ranked components, logit lens, top neurons and
// answer scores.
func Compare(e models.Engine, o CompareOptions) (*CompareResult, error) {
	info := e.ModelInfo()
	nl := info.NLayer
	if err := CheckPosSpec(o.Positions); err != nil {
		return nil, err
	}
	ids, err := TokenizePrompts(e, o.Tokenize, o.A, o.B)
	if err != nil {
		return nil, err
	}
	idsA, idsB := ids[0], ids[1]
	toksA, toksB := Tokens(e, idsA), Tokens(e, idsB)
	// --pos image / image-mean (image.go): img.MeanA stands for A's image
	// mean at position len(idsA), one past its last token (B likewise)
	var img *ImagePairs
	var pairs []diff.PosPair
	if HasImagePositions(o.Positions) {
		if img, err = ParseImagePositions(o.Positions, toksA, toksB); err != nil {
			return nil, err
		}
		pairs = img.Pairs
	} else if pairs, err = diff.ParsePositions(o.Positions, len(idsA), len(idsB)); err != nil {
		return nil, &InputError{Err: err}
	}
	c := &CompareResult{Model: o.Model, LensNorm: o.Lens.String()}
	for _, p := range pairs {
		c.Positions = append(c.Positions, PosPair{p.A, p.B})
	}
	c.Warnings = append(BOSWarnings(e, o.Tokenize, "prompt A", idsA), BOSWarnings(e, o.Tokenize, "prompt B", idsB)...)
	c.Warnings = append(c.Warnings, imageMeanWarnings(img, toksA, toksB)...)
	// more predictions or lens tokens than the vocabulary has would be
	// empty rows
	if nv := e.NVocab(); o.TopK > nv || o.LensK > nv {
		c.Warnings = append(c.Warnings, fmt.Sprintf("the vocabulary has %d tokens: --top-k and --lens-k show at most %d", nv, nv))
		o.TopK, o.LensK = min(o.TopK, nv), min(o.LensK, nv)
	}
	// Identical token sequences are decoded once and serve as both A and
	// B: two sequences of one batch sit at other places of the KV cache
	// and differ in the last bits (1e-6), which would rank rounding noise.
	same := slices.Equal(idsA, idsB) && (img == nil || img.MeanA == img.MeanB)
	if same && !slices.ContainsFunc(pairs, func(p diff.PosPair) bool { return p.A != p.B }) {
		c.Warnings = append(c.Warnings, "A and B are the same tokens: decoded once, so every difference below is exactly 0")
	}
	c.Warnings = append(c.Warnings, TokenWarnings(toksA, toksB, pairs)...)

	// answers are decoded with the prompts, as extra sequences
	type answerSeq struct {
		text     string
		ids      []int32 // answer tokens as the model would produce them after each prompt
		inA, inB []int32 // full sequences
		note     string
	}
	var answers []answerSeq
	for _, ans := range o.Answers {
		as := answerSeq{text: ans}
		tailA, noteA, err := AnswerTokens(e, o.A, idsA, ans, o.Tokenize)
		if err != nil {
			return nil, err
		}
		tailB, noteB, err := AnswerTokens(e, o.B, idsB, ans, o.Tokenize)
		if err != nil {
			return nil, err
		}
		as.ids = tailA
		as.note = noteA
		if noteB != "" && noteB != noteA {
			as.note = strings.TrimSpace(as.note + " " + noteB)
		}
		as.inA = slices.Concat(idsA, tailA)
		as.inB = slices.Concat(idsB, tailB)
		answers = append(answers, as)
	}

	var hooks, rankHooks []models.Hook
	for l := range nl {
		for _, k := range o.Kinds {
			rankHooks = append(rankHooks, models.Hook{Kind: k, Layer: l})
		}
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
	}
	hooks = models.SortHooks(append(append(hooks, rankHooks...), models.Hook{Kind: models.Logits, Layer: -1}))
	seqs := [][]int32{idsA, idsB}
	// Only the compared positions are kept, and the engine computes logits
	// for those rows only: the output matrix over every position of both
	// prompts would cost more than the layers on small models.
	rowsA, rowsB := distinct(pairs, func(p diff.PosPair) int { return p.A }), distinct(pairs, func(p diff.PosPair) int { return p.B })
	pos := [][]int{rowsA, rowsB}
	if same {
		rowsA = distinct(append(slices.Clone(pairs), swapPairs(pairs)...), func(p diff.PosPair) int { return p.A })
		rowsB = rowsA
		seqs, pos = seqs[:1], pos[:1]
		pos[0] = rowsA
	}
	// an image mean runs the image positions and becomes one more row
	pos, meanRows := imageMeanRows(img, pos, toksA, toksB, same)
	run, err := e.NewRunner(seqs, len(seqs))
	if err != nil {
		return nil, err
	}
	defer run.Close()
	rows, err := run.RunRows(seqs, pos, hooks)
	if err != nil {
		return nil, err
	}
	ca := rows[0].Cache(idsA, nl)
	cb := ca
	if !same {
		cb = rows[1].Cache(idsB, nl)
	}
	if meanRows[0] != nil {
		ca, rowsA = withMeanRow(ca, meanRows[0]), append(slices.Clone(pos[0]), len(idsA))
		if same {
			cb, rowsB = ca, rowsA
		}
	}
	if meanRows[1] != nil {
		cb, rowsB = withMeanRow(cb, meanRows[1]), append(slices.Clone(pos[1]), len(idsB))
	}
	if err := CheckFinite(e, ca, cb); err != nil {
		return nil, err
	}
	// rp are the pairs as row indices of ca and cb
	rp := make([]diff.PosPair, len(pairs))
	for i, p := range pairs {
		rp[i] = diff.PosPair{A: slices.Index(rowsA, p.A), B: slices.Index(rowsB, p.B)}
	}
	lastRow := rp[len(rp)-1]

	// predictions at the last compared pair
	last := pairs[len(pairs)-1]
	for i, pr := range []struct {
		text string
		toks []Token
		c    *models.Cache
		pos  int
		row  int
	}{{o.A, toksA, ca, last.A, lastRow.A}, {o.B, toksB, cb, last.B, lastRow.B}} {
		lg := LogitsRow(pr.c, pr.row)
		probs := lens.Softmax(nil, lg)
		p := Prompt{Text: pr.text, Tokens: pr.toks, Pos: pr.pos}
		for _, t := range lens.TopK(lg, o.TopK) {
			p.Top = append(p.Top, PredToken{ID: t.ID, Piece: e.Printable(t.ID), Prob: float64(probs[t.ID]), Logit: t.Value})
		}
		c.Prompts[i] = p
	}

	// ranking
	comps, err := diff.Compare(ca, cb, models.SortHooks(rankHooks), rp)
	if err != nil {
		return nil, err
	}
	ranked, err := diff.Rank(comps, o.Sort)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	c.Layers = diff.ByLayer(comps)
	for _, comp := range ranked {
		c.Components = append(c.Components, Component{
			Hook: comp.Hook.Name(), Short: comp.Hook.Short(), Layer: comp.Hook.Layer, Kind: string(comp.Hook.Kind),
			L2: comp.L2, RelL2: comp.RelL2, Cosine: comp.Cosine, NormA: comp.NormA, NormB: comp.NormB,
		})
	}

	// logit lens of resid_post at every layer, at the last compared pair
	if o.NoLens {
		c.Lens = []LensLayer{}
	} else if c.Lens, err = compareLens(e, ca, cb, lastRow, o, meanRows[0] == nil && meanRows[1] == nil); err != nil {
		return nil, err
	}

	// neurons of the most different component
	if len(ranked) > 0 {
		top := ranked[0]
		ra, _ := ca.At(top.Hook)
		rb, _ := cb.At(top.Hook)
		// the pair where this component differs most
		best := top.PerPos[0]
		for _, pp := range top.PerPos {
			if pp.L2 > best.L2 {
				best = pp
			}
		}
		nj := &NeuronsResult{Hook: top.Hook.Name(), Pos: PosPair{rowsA[best.Pair.A], rowsB[best.Pair.B]}}
		nj.Neurons = []Neuron{}
		for _, n := range diff.TopNeurons(ra.Row(best.Pair.A), rb.Row(best.Pair.B), o.Neurons) {
			if n.Diff == 0 {
				continue // a dimension where A and B do not differ is no answer
			}
			nj.Neurons = append(nj.Neurons, Neuron{n.Index, n.A, n.B, n.Diff})
		}
		c.Neurons = nj
	}

	// answers: one more run with prompt + answer tokens fed in
	if len(answers) > 0 {
		// a sequence that is the same in A and B is decoded once, so that
		// both score it with the same bits
		var seqs [][]int32
		index := map[string]int{}
		at := func(s []int32) int {
			k := fmt.Sprint(s)
			if i, ok := index[k]; ok {
				return i
			}
			index[k] = len(seqs)
			seqs = append(seqs, s)
			return len(seqs) - 1
		}
		type pairAt struct{ a, b int }
		var where []pairAt
		for _, as := range answers {
			where = append(where, pairAt{at(as.inA), at(as.inB)})
		}
		arun, err := e.NewRunner(seqs, 2)
		if err != nil {
			return nil, fmt.Errorf("scoring --answer runs each prompt with the answer after it (the tokens counted here): %w", err)
		}
		defer arun.Close()
		out, err := arun.Run(seqs, nil)
		if err != nil {
			return nil, err
		}
		if err := CheckFinite(e, out...); err != nil {
			return nil, err
		}
		for i, as := range answers {
			aj := AnswerResult{Text: as.text, Tokens: Tokens(e, as.ids), Note: as.note}
			aj.A, aj.LogProbA = ScoreAnswer(e, out[where[i].a], len(idsA))
			aj.B, aj.LogProbB = ScoreAnswer(e, out[where[i].b], len(idsB))
			c.Answers = append(c.Answers, aj)
		}
	}
	c.Summary = Summarize(c)
	return c, nil
}

// compareLens is the logit lens of resid_post at every layer at the rows of
// pair p.
//
// In norm mode the last layer's lens is, by definition, the model's own
// logits (final norm, W_U, the soft-cap where the model caps), which the
// run has already computed for these rows: when modelLogits is true they
// are taken from the caches instead of being computed a second time (one
// layer's rows fewer through the output matrix, 1/n_layer of the lens).
// modelLogits is false when a row is not a position but a mean of
// positions, whose logits are not the lens of the mean.
func compareLens(e models.Engine, ca, cb *models.Cache, p diff.PosPair, o CompareOptions, modelLogits bool) ([]LensLayer, error) {
	u, err := e.NewUnembedder()
	if err != nil {
		return nil, err
	}
	defer u.Close()
	info := e.ModelInfo()
	d, nl, nv := info.DModel, info.NLayer, e.NVocab()
	logitsHook := models.Hook{Kind: models.Logits, Layer: -1}
	var lastA, lastB []float32
	if la, okA := ca.At(logitsHook); okA && modelLogits && o.Lens == models.LensNorm {
		if lb, okB := cb.At(logitsHook); okB && la.Width == nv && lb.Width == nv {
			lastA, lastB = la.Row(p.A), lb.Row(p.B)
		}
	}
	computed := nl
	if lastA != nil {
		computed = nl - 1
	}
	x := make([]float32, 0, 2*computed*d)
	for l := range computed {
		h := models.Hook{Kind: models.ResidPost, Layer: l}
		ra, okA := ca.At(h)
		rb, okB := cb.At(h)
		if !okA || !okB {
			return nil, errors.New("analysis: the engine returned no " + h.Name())
		}
		x = append(x, ra.Row(p.A)...)
		x = append(x, rb.Row(p.B)...)
	}
	lg := make([]float32, 0, 2*nl*nv)
	if computed > 0 {
		if lg, err = u.Unembed(lg, x, 2*computed, o.Lens); err != nil {
			return nil, err
		}
	}
	if lastA != nil {
		lg = append(append(lg, lastA...), lastB...)
	}
	dl := make([]float32, nv)
	toLens := func(ts []lens.Token, sign float64) []LensToken {
		out := make([]LensToken, len(ts))
		for i, t := range ts {
			out[i] = LensToken{Piece: e.Printable(t.ID), ID: t.ID, Value: sign * t.Value}
		}
		return out
	}
	var out []LensLayer
	for l := range nl {
		la, lb := lg[(2*l)*nv:(2*l+1)*nv], lg[(2*l+1)*nv:(2*l+2)*nv]
		diff.SubTo(dl, la, lb)
		// tokens whose logit does not change are neither promoted nor
		// suppressed: A−B lists only positive differences, B−A negative ones
		up := slices.DeleteFunc(lens.TopK(dl, o.LensK), func(t lens.Token) bool { return !(t.Value > 0) })
		down := slices.DeleteFunc(lens.BottomK(dl, o.LensK), func(t lens.Token) bool { return !(t.Value < 0) })
		out = append(out, LensLayer{
			Layer: l, Hook: models.Hook{Kind: models.ResidPost, Layer: l}.Name(),
			A: toLens(lens.TopK(la, o.LensK), 1), B: toLens(lens.TopK(lb, o.LensK), 1),
			AMinusB: toLens(up, 1), BMinusA: toLens(down, -1),
		})
	}
	return out, nil
}

// swapPairs returns pairs with A and B exchanged.
func swapPairs(pairs []diff.PosPair) []diff.PosPair {
	out := make([]diff.PosPair, len(pairs))
	for i, p := range pairs {
		out[i] = diff.PosPair{A: p.B, B: p.A}
	}
	return out
}

// distinct returns the distinct positions of one side of pairs, sorted.
func distinct(pairs []diff.PosPair, side func(diff.PosPair) int) []int {
	var ps []int
	for _, p := range pairs {
		ps = append(ps, side(p))
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}
