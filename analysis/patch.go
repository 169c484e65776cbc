package analysis

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// PatchOptions configure Patch.
type PatchOptions struct {
	// Model names the model in the result.
	Model string
	// Clean is the prompt whose activations are patched in; Corrupt the
	// prompt re-run with each patch.
	Clean, Corrupt string
	Tokenize       models.TokenizeOptions
	// Answer is the clean answer (" she", with its space); Wrong, when
	// set, the corrupt one: the metric is then their logit difference.
	Answer, Wrong string
	// Kinds and Layers are the components patched; the model must have
	// the kinds, the layers are in range.
	Kinds  []models.Kind
	Layers []int
	// Positions is each, all, last or a list (see PatchPositions).
	Positions string
	// Top, when > 0, patches only the Top components that compare ranks
	// highest, and puts both rankings side by side.
	Top int
	// Exact decodes every variant alone from position 0.
	Exact bool
	// Parallel is how many variants are decoded together; 0 picks 16, or
	// fewer when their KV cache (of KVBytes bytes per value: 4 for f32, 2
	// for f16) would pass 1 GiB.
	Parallel, KVBytes int
	// Progress hears how many patched runs are done.
	Progress Progress
}

// PatchResult is the document `patch --json` prints (docs/patch.md).
type PatchResult struct {
	Model string `json:"model"`
	// Summary says in words where the effect lives, from the results.
	Summary *PatchSummary `json:"summary"`
	// Metric is "logit_diff" (answer − wrong, first tokens, at the last
	// prompt position) or "logprob" (log-probability of the whole answer).
	Metric     string        `json:"metric"`
	MetricDesc string        `json:"metric_desc"`
	Answer     PatchAnswer   `json:"answer"`
	Wrong      *PatchAnswer  `json:"wrong,omitempty"`
	Clean      PatchPrompt   `json:"clean"`
	Corrupt    PatchPrompt   `json:"corrupt"`
	Positions  string        `json:"positions"` // each, all, last or list
	Kinds      []string      `json:"kinds"`
	Layers     []int         `json:"layers"`
	Results    []PatchedCell `json:"results"`
	// FromCompare is set when Top > 0.
	FromCompare *FromCompare `json:"from_compare,omitempty"`
	Notes       []string     `json:"notes"`
	Runs        int          `json:"runs"`
	Tokens      int          `json:"tokens_decoded"`
	Seconds     float64      `json:"seconds"`
	RunsPerSec  float64      `json:"runs_per_second"`
}

// PatchAnswer is an answer and its tokens after the corrupt prompt.
type PatchAnswer struct {
	Text   string  `json:"text"`
	Tokens []Token `json:"tokens"`
	Note   string  `json:"note,omitempty"`
}

// PatchPrompt is the clean or the corrupt prompt and its scores.
type PatchPrompt struct {
	Text   string  `json:"text"`
	Tokens []Token `json:"tokens"`
	PatchScore
}

// PatchPos is a patched pair of positions.
type PatchPos struct {
	Clean   int `json:"clean"`
	Corrupt int `json:"corrupt"`
}

// PatchedCell is the effect of patching one component at some positions.
type PatchedCell struct {
	Hook  string `json:"hook"`
	Short string `json:"short"`
	Kind  string `json:"kind"`
	Layer int    `json:"layer"`
	// Positions are the patched positions: one pair, or every pair for
	// PosAll.
	Positions []PatchPos `json:"positions"`
	// Normalized is (metric − corrupt) / (clean − corrupt).
	Normalized float64 `json:"normalized"`
	PatchScore
}

// FromCompare puts compare's ranking of the patched components next to
// patching's.
type FromCompare struct {
	Top int `json:"top"`
	// Spearman is the rank correlation between compare's relative
	// difference and |normalized|; null when undefined.
	Spearman   *float64        `json:"spearman"`
	Components []CompareRanked `json:"components"`
}

// CompareRanked is one component in both rankings.
type CompareRanked struct {
	Hook        string     `json:"hook"`
	Positions   []PatchPos `json:"positions"`
	CompareRank int        `json:"compare_rank"`
	RelL2       float64    `json:"rel_l2"`
	PatchRank   int        `json:"patch_rank"`
	Normalized  float64    `json:"normalized"`
}

// Cell is one component to patch: a hook at some positions (A: clean
// position, B: corrupt position), with compare's relative difference there
// when ranked.
type Cell struct {
	Hook  models.Hook
	Pairs []diff.PosPair
	Rel   float64
}

// Patch is activation patching: it runs the clean and the corrupt prompt
// (each followed by the answer's tokens but the last), keeps the clean
// activations, re-runs the corrupt prompt once per cell with that cell's
// activation replaced by the clean one, and scores each run with the
// answer metric normalised between the corrupt (0) and the clean (1) run.
func Patch(e models.Engine, o PatchOptions) (*PatchResult, error) {
	ids, err := TokenizePrompts(e, o.Tokenize, o.Clean, o.Corrupt)
	if err != nil {
		return nil, err
	}
	idsC, idsK := ids[0], ids[1]
	mode, groups, notes, err := PatchPositions(o.Positions, idsC, idsK)
	if err != nil {
		return nil, err
	}
	doc := &PatchResult{
		Model: o.Model, Positions: mode, Layers: o.Layers, Notes: append([]string{}, notes...),
		Clean:   PatchPrompt{Text: o.Clean, Tokens: Tokens(e, idsC)},
		Corrupt: PatchPrompt{Text: o.Corrupt, Tokens: Tokens(e, idsK)},
	}
	for _, k := range o.Kinds {
		doc.Kinds = append(doc.Kinds, string(k))
	}
	doc.Notes = append(doc.Notes, BOSWarnings(e, o.Tokenize, "the clean prompt", idsC)...)
	doc.Notes = append(doc.Notes, BOSWarnings(e, o.Tokenize, "the corrupt prompt", idsK)...)

	// answer tokens after each prompt; the runs decode prompt + answer
	ansC, noteC, err := AnswerTokens(e, o.Clean, idsC, o.Answer, o.Tokenize)
	if err != nil {
		return nil, err
	}
	ansK, noteK, err := AnswerTokens(e, o.Corrupt, idsK, o.Answer, o.Tokenize)
	if err != nil {
		return nil, err
	}
	if len(ansC) == 0 || len(ansK) == 0 {
		return nil, inputErr("--answer %q gives no tokens", o.Answer)
	}
	doc.Answer = PatchAnswer{Text: o.Answer, Tokens: Tokens(e, ansK), Note: cmp.Or(noteK, noteC)}
	wrongC, wrongK := int32(-1), int32(-1)
	if o.Wrong != "" {
		wC, _, err := AnswerTokens(e, o.Clean, idsC, o.Wrong, o.Tokenize)
		if err != nil {
			return nil, err
		}
		wK, noteW, err := AnswerTokens(e, o.Corrupt, idsK, o.Wrong, o.Tokenize)
		if err != nil {
			return nil, err
		}
		if len(wC) == 0 || len(wK) == 0 {
			return nil, inputErr("--wrong %q gives no tokens", o.Wrong)
		}
		if wK[0] == ansK[0] || wC[0] == ansC[0] {
			return nil, inputErr("--answer %q and --wrong %q start with the same token %s: their logit difference is 0; choose answers whose first tokens differ",
				o.Answer, o.Wrong, e.Printable(wK[0]))
		}
		wrongC, wrongK = wC[0], wK[0]
		doc.Wrong = &PatchAnswer{Text: o.Wrong, Tokens: Tokens(e, wK), Note: noteW}
		doc.Metric = "logit_diff"
		doc.MetricDesc = fmt.Sprintf("logit(%s) − logit(%s) at the last prompt position", e.Printable(ansK[0]), e.Printable(wK[0]))
		if len(ansK) > 1 || len(wK) > 1 {
			doc.Notes = append(doc.Notes, "the logit difference compares the first token of each answer; answer_prob is the probability of the whole answer")
		}
	} else {
		doc.Metric = "logprob"
		var ps []string
		for _, id := range ansK {
			ps = append(ps, e.Printable(id))
		}
		doc.MetricDesc = fmt.Sprintf("log P(%s) after the prompt", strings.Join(ps, " "))
	}
	metC, metK := AnswerMetric(ansC, wrongC), AnswerMetric(ansK, wrongK)
	seqC := append(slices.Clone(idsC), ansC[:len(ansC)-1]...)
	seqK := append(slices.Clone(idsK), ansK[:len(ansK)-1]...)
	metricPos := func(nPrompt, nAns int) []int {
		ps := make([]int, nAns)
		for j := range ps {
			ps[j] = nPrompt - 1 + j
		}
		return ps
	}

	// the components and their cells
	var hooks []models.Hook
	for _, l := range o.Layers {
		for _, k := range o.Kinds {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
	}
	hooks = models.SortHooks(hooks)
	var cells []Cell
	for _, h := range hooks {
		for _, g := range groups {
			cells = append(cells, Cell{Hook: h, Pairs: g})
		}
	}

	// the runner: the size the parallel patch runs need
	par := patchParallel(o, e.ModelInfo(), len(seqK), len(cells))
	runSeqs := make([][]int32, par+1)
	for i := range runSeqs {
		runSeqs[i] = seqK
	}
	runSeqs[0] = seqC
	run, err := e.NewRunner(runSeqs, par+1)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	captured := append(slices.Clone(hooks), models.Hook{Kind: models.Logits, Layer: -1})
	// one sequence per Run: decoded alone, as the patched runs' base is
	cacheC, err := run.Run([][]int32{seqC}, captured)
	if err != nil {
		return nil, err
	}
	nv := e.NVocab()
	rowsAt := func(c *models.Cache, ps []int) []float32 {
		lg, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
		var out []float32
		for _, p := range ps {
			out = append(out, lg.Row(p)...)
		}
		return out
	}
	doc.Clean.PatchScore = metC(rowsAt(cacheC[0], metricPos(len(idsC), len(ansC))), nv)

	cacheK, err := run.Run([][]int32{seqK}, captured)
	if err != nil {
		return nil, err
	}
	// a model that produces NaN would show up as a metric without
	// difference, or a grid of NaN: say what it is
	if err := CheckFinite(e, cacheC[0], cacheK[0]); err != nil {
		return nil, err
	}
	if o.Top > 0 {
		if cells, err = RankCells(cacheC[0], cacheK[0], hooks, groups, o.Top, &doc.Notes); err != nil {
			return nil, err
		}
	}

	// One variant per distinct (node, positions): resid_pre.L+1 is
	// resid_post.L. A patch that writes the values the corrupt run already
	// has (positions before the first differing token) changes nothing:
	// it is not run, and scores as the corrupt run, exactly.
	variantOf := make([]int, len(cells))
	var variants [][]models.Patch
	seen := map[string]int{}
	noops := 0
	for i, cell := range cells {
		node, _ := e.HookTable().Node(cell.Hook)
		key := fmt.Sprint(node, cell.Pairs)
		if v, ok := seen[key]; ok {
			variantOf[i] = v
			continue
		}
		actC, _ := cacheC[0].At(cell.Hook)
		actK, _ := cacheK[0].At(cell.Hook)
		p := models.Patch{Hook: cell.Hook}
		same := true
		for _, pr := range cell.Pairs {
			p.Positions = append(p.Positions, pr.B)
			p.Values = append(p.Values, actC.Row(pr.A)...)
			same = same && sameBits(actC.Row(pr.A), actK.Row(pr.B))
		}
		if same {
			seen[key], variantOf[i] = -1, -1
			noops++
			continue
		}
		seen[key] = len(variants)
		variantOf[i] = len(variants)
		variants = append(variants, []models.Patch{p})
	}
	if noops > 0 {
		what := "patches write"
		if noops == 1 {
			what = "patch writes"
		}
		doc.Notes = append(doc.Notes, fmt.Sprintf("%d %s the values the corrupt run already has (tokens before the first difference): not re-run, scored as the corrupt run", noops, what))
	}

	po := models.PatchOptions{Logits: metricPos(len(idsK), len(ansK)), Plain: o.Exact, Parallel: par}
	if o.Progress != nil {
		o.Progress.Start(len(variants))
		po.Progress = func(done, total int) { o.Progress.Update(done) }
	}
	t0 := time.Now()
	res, err := run.Patch(seqK, variants, po)
	if o.Progress != nil {
		o.Progress.Done()
	}
	if err != nil {
		return nil, err
	}
	doc.Seconds = time.Since(t0).Seconds()
	doc.Runs, doc.Tokens = len(variants), res.Tokens
	if doc.Seconds > 0 {
		doc.RunsPerSec = float64(len(variants)) / doc.Seconds
	}
	doc.Corrupt.PatchScore = metK(res.Base, nv)
	lo, hi := doc.Corrupt.Metric, doc.Clean.Metric
	if !(math.Abs(hi-lo) > 1e-6*max(1, math.Abs(hi), math.Abs(lo))) {
		return nil, fmt.Errorf("the metric (%s) is %.4g for the clean and %.4g for the corrupt run: there is no difference for patching to restore; "+
			"check with lldiff compare that the prompts change the answer, and that --answer is the clean prompt's answer", doc.MetricDesc, hi, lo)
	}
	if hi < lo {
		doc.Notes = append(doc.Notes, fmt.Sprintf("the corrupt run scores higher than the clean run (%.4g > %.4g): were --clean and --corrupt, or --answer and --wrong, swapped?", lo, hi))
	}
	for i, cell := range cells {
		s := doc.Corrupt.PatchScore
		if v := variantOf[i]; v >= 0 {
			s = metK(res.Variants[v], nv)
		}
		doc.Results = append(doc.Results, PatchedCell{
			Hook: cell.Hook.Name(), Short: cell.Hook.Short(), Kind: string(cell.Hook.Kind), Layer: cell.Hook.Layer,
			Positions: patchPairs(cell.Pairs), Normalized: Normalized(s.Metric, lo, hi), PatchScore: s,
		})
	}
	if o.Top > 0 {
		doc.FromCompare = CompareVsPatch(cells, doc.Results, o.Top)
	}
	doc.Summary = SummarizePatch(doc)
	return doc, nil
}

// patchParallel returns how many variants to decode together: o.Parallel,
// or 16, fewer when the KV cache for them would pass 1 GiB.
func patchParallel(o PatchOptions, info *models.Info, n, variants int) int {
	if o.Exact {
		return 1
	}
	p := o.Parallel
	if p == 0 {
		p = 16
		bytes := cmp.Or(o.KVBytes, 4)
		perToken := 2 * info.NLayer * info.NHeadKV * info.DHead * bytes
		for p > 1 && (p+1)*n*perToken > 1<<30 {
			p /= 2
		}
	}
	return max(1, min(p, variants, 255))
}

func patchPairs(pairs []diff.PosPair) []PatchPos {
	out := make([]PatchPos, len(pairs))
	for i, p := range pairs {
		out[i] = PatchPos{Clean: p.A, Corrupt: p.B}
	}
	return out
}

// RankCells returns the top cells by compare's relative difference between
// the clean (a) and the corrupt (b) activations at the cells' positions,
// one cell per distinct activation (resid_pre.L+1 is resid_post.L: the
// first of the two is kept), ties in the order of the layers. A note says
// when fewer than top distinct cells exist.
func RankCells(a, b *models.Cache, hooks []models.Hook, groups [][]diff.PosPair, top int, notes *[]string) ([]Cell, error) {
	var cands []Cell
	for _, g := range groups {
		comps, err := diff.Compare(a, b, hooks, g)
		if err != nil {
			return nil, err
		}
		for _, c := range comps {
			cands = append(cands, Cell{Hook: c.Hook, Pairs: g, Rel: c.RelL2})
		}
	}
	slices.SortStableFunc(cands, func(x, y Cell) int {
		if c := cmp.Compare(y.Rel, x.Rel); c != 0 {
			return c
		}
		return cmp.Compare(x.Hook.Layer, y.Hook.Layer)
	})
	var out []Cell
	seen := map[string]bool{}
	for _, c := range cands {
		h := c.Hook
		if h.Kind == models.ResidPre && h.Layer > 0 {
			h = models.Hook{Kind: models.ResidPost, Layer: h.Layer - 1}
		}
		key := fmt.Sprint(h, c.Pairs)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, c)
		if len(out) == top {
			break
		}
	}
	if len(out) < top {
		*notes = append(*notes, fmt.Sprintf("--top %d: only %d distinct components to patch", top, len(out)))
	}
	return out, nil
}

// CompareVsPatch puts compare's ranking of cells (the order of cells) next
// to the ranking by |normalized| patching effect of results (one per cell),
// with Spearman's rank correlation of rel_l2 and |normalized|.
func CompareVsPatch(cells []Cell, results []PatchedCell, top int) *FromCompare {
	order := make([]int, len(cells))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		return cmp.Compare(math.Abs(results[y].Normalized), math.Abs(results[x].Normalized))
	})
	patchRank := make([]int, len(cells))
	for r, i := range order {
		patchRank[i] = r + 1
	}
	fc := &FromCompare{Top: top}
	rel := make([]float64, len(cells))
	eff := make([]float64, len(cells))
	for i, c := range cells {
		rel[i], eff[i] = c.Rel, math.Abs(results[i].Normalized)
		fc.Components = append(fc.Components, CompareRanked{
			Hook: c.Hook.Name(), Positions: patchPairs(c.Pairs), CompareRank: i + 1, RelL2: c.Rel,
			PatchRank: patchRank[i], Normalized: results[i].Normalized,
		})
	}
	if len(cells) >= 2 {
		if r := diff.Spearman(rel, eff); !math.IsNaN(r) {
			fc.Spearman = &r
		}
	}
	return fc
}

// sameBits reports whether a and b hold the same float32 bits.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
