package cli

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// CompareOptions are the options of `lldiff compare`.
type CompareOptions struct {
	IO       *IOStreams
	Model    modelFlags
	A, B     string
	AFile    string
	BFile    string
	Pos      string
	Kinds    string
	Sort     string
	Top      int
	TopK     int
	LensK    int
	LensNorm string
	Neurons  int
	Answers  []string
	JSON     bool

	NoTokens, NoPredictions, NoRanking, NoLayers, NoLens, NoNeurons bool

	// kindsSet is set when --kinds was given: then a kind the architecture
	// lacks is an error, while the default list drops it with a note.
	kindsSet bool
}

func newCmdCompare(io *IOStreams, runF func(*CompareOptions) error) *cobra.Command {
	opts := &CompareOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "compare -m MODEL \"PROMPT A\" \"PROMPT B\"",
		Short: "Compare two prompts inside the model: tokens, predictions, components, logit lens",
		Long: `Run prompt A and prompt B as two separate sequences (never padded into one
batch row), capture every layer's residual stream, attention and MLP
outputs, and show:

  tokens       both tokenizations side by side, with warnings where they differ
  predictions  top next tokens of each prompt; --answer scores given answers
  ranking      components sorted by how much A and B differ there
  layers       a compact per-layer view of the same numbers
  lens         the logit lens of A, B and of their difference, per layer
  neurons      the dimensions that differ most in the most different component

Positions (--pos): last (default: the last token of each prompt), indices
such as -1 or 3 (negative from the end), all (equal token counts only), or
explicit pairs A:B such as 5:6.

Lens normalisation (--lens-norm) for differences: norm (default) unembeds
each residual through the final norm (RMSNorm; LayerNorm with its bias for
gpt2 and gptneox) and subtracts the logits, norm(a)−norm(b); gamma applies
the norm weight γ without rescaling, γ⊙(a−b) (centred for a LayerNorm);
raw is W_U·(a−b) as in the original notebook.

The default --kinds leaves out kinds the architecture lacks, with a note:
Pythia (gptneox with a parallel residual) has no resid_mid.`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				opts.A = args[0]
			}
			if len(args) > 1 {
				opts.B = args[1]
			}
			if err := opts.Model.check(); err != nil {
				return err
			}
			opts.kindsSet = cmd.Flags().Changed("kinds")
			if opts.Top < 1 || opts.TopK < 1 || opts.LensK < 1 || opts.Neurons < 1 {
				return usageErr("--top, --top-k, --lens-k and --neurons take numbers >= 1")
			}
			if _, err := lens.ParseMode(opts.LensNorm); err != nil {
				return &UsageError{Err: err}
			}
			if _, err := diff.Rank(nil, opts.Sort); err != nil {
				return &UsageError{Err: err}
			}
			if runF != nil {
				return runF(opts)
			}
			return compareRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.AFile, "a-file", "", "read prompt A from a file")
	f.StringVar(&opts.BFile, "b-file", "", "read prompt B from a file")
	f.StringVar(&opts.Pos, "pos", "last", "positions to compare: last, -1, 3, all, or pairs 3:4")
	f.StringVar(&opts.Kinds, "kinds", "resid_post,resid_mid,attn_out,mlp_out", "component kinds to rank")
	f.StringVar(&opts.Sort, "sort", "rel", "rank by rel (‖A−B‖/mean‖·‖), l2, or cosine (lowest first)")
	f.IntVar(&opts.Top, "top", 10, "components in the ranking table")
	f.IntVar(&opts.TopK, "top-k", 5, "predicted tokens per prompt")
	f.IntVar(&opts.LensK, "lens-k", 5, "tokens per logit-lens cell")
	f.StringVar(&opts.LensNorm, "lens-norm", "norm", "logit lens normalisation: norm, gamma or raw")
	f.IntVar(&opts.Neurons, "neurons", 10, "dimensions shown for the most different component")
	f.StringArrayVar(&opts.Answers, "answer", nil, "score an answer continuation, e.g. --answer \" he\" (repeatable)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/compare-json.md)")
	f.BoolVar(&opts.NoTokens, "no-tokens", false, "hide the tokens section")
	f.BoolVar(&opts.NoPredictions, "no-predictions", false, "hide the predictions section")
	f.BoolVar(&opts.NoRanking, "no-ranking", false, "hide the ranking section")
	f.BoolVar(&opts.NoLayers, "no-layers", false, "hide the per-layer view")
	f.BoolVar(&opts.NoLens, "no-lens", false, "hide the logit lens section")
	f.BoolVar(&opts.NoNeurons, "no-neurons", false, "hide the neurons section")
	return cmd
}

// CompareJSON is the document `compare --json` prints.
type CompareJSON struct {
	Model      string          `json:"model"`
	Positions  []posJSON       `json:"positions"`
	Warnings   []string        `json:"warnings"`
	Prompts    [2]promptJSON   `json:"prompts"`
	Components []componentJSON `json:"components"`
	LensNorm   string          `json:"lens_norm"`
	Lens       []lensLayerJSON `json:"lens"`
	Neurons    *neuronsJSON    `json:"neurons,omitempty"`
	Answers    []answerJSON    `json:"answers,omitempty"`
}

type posJSON struct {
	A int `json:"a"`
	B int `json:"b"`
}

type promptJSON struct {
	Text   string      `json:"text"`
	Tokens []tokenJSON `json:"tokens"`
	// Pos is the position whose predictions Top lists.
	Pos int             `json:"pos"`
	Top []predTokenJSON `json:"top"`
}

type predTokenJSON struct {
	ID    int32   `json:"id"`
	Piece string  `json:"piece"`
	Prob  float64 `json:"prob"`
	Logit float64 `json:"logit"`
}

type componentJSON struct {
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

type lensTokenJSON struct {
	Piece string  `json:"piece"`
	ID    int32   `json:"id"`
	Value float64 `json:"value"`
}

type lensLayerJSON struct {
	Layer   int             `json:"layer"`
	Hook    string          `json:"hook"`
	A       []lensTokenJSON `json:"a"`
	B       []lensTokenJSON `json:"b"`
	AMinusB []lensTokenJSON `json:"a_minus_b"`
	BMinusA []lensTokenJSON `json:"b_minus_a"`
}

type neuronsJSON struct {
	Hook    string       `json:"hook"`
	Pos     posJSON      `json:"pos"`
	Neurons []neuronJSON `json:"neurons"`
}

type neuronJSON struct {
	Index int     `json:"index"`
	A     float64 `json:"a"`
	B     float64 `json:"b"`
	Diff  float64 `json:"diff"`
}

type answerJSON struct {
	Text   string            `json:"text"`
	Tokens []tokenJSON       `json:"tokens"`
	Note   string            `json:"note,omitempty"`
	A      []answerScoreJSON `json:"a"`
	B      []answerScoreJSON `json:"b"`
	// LogProbA and LogProbB are the log-probabilities of the whole answer.
	LogProbA float64 `json:"logprob_a"`
	LogProbB float64 `json:"logprob_b"`
}

type answerScoreJSON struct {
	ID    int32   `json:"id"`
	Piece string  `json:"piece"`
	Rank  int     `json:"rank"`
	Logit float64 `json:"logit"`
	Prob  float64 `json:"prob"`
}

// comparison holds everything compare computed, for both outputs.
type comparison struct {
	doc      CompareJSON
	pairs    []diff.PosPair
	comps    []diff.Component
	ranked   []diff.Component
	modelTop [2]int32
}

func compareRun(opts *CompareOptions) error {
	a, err := readPrompt(opts.A, opts.AFile, "prompt A")
	if err != nil {
		return err
	}
	b, err := readPrompt(opts.B, opts.BFile, "prompt B")
	if err != nil {
		return err
	}
	if strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
		return usageErr("compare needs two non-empty prompts: lldiff compare -m MODEL \"prompt A\" \"prompt B\" (or --a-file/--b-file)")
	}
	mode, _ := lens.ParseMode(opts.LensNorm)
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	var kinds []models.Kind
	var skipped []string
	for _, s := range strings.Split(opts.Kinds, ",") {
		hs, err := models.ParseHook(strings.TrimSpace(s), m.NLayer())
		if err != nil {
			return &UsageError{Err: err}
		}
		if !hs[0].Kind.PerLayer() || len(hs) != m.NLayer() {
			return usageErr("--kinds takes per-layer kinds without a layer (resid_post, resid_mid, attn_out, mlp_out, resid_pre, z), got %q", s)
		}
		if err := m.Hooks.Check(hs[0].Kind); err != nil {
			if opts.kindsSet {
				return &UsageError{Err: err}
			}
			skipped = append(skipped, err.Error()+"; left out of the ranking")
			continue
		}
		kinds = append(kinds, hs[0].Kind)
	}
	c, err := compute(opts, m, a, b, kinds, mode)
	if err != nil {
		return err
	}
	c.doc.Warnings = append(skipped, c.doc.Warnings...) // the last one says what is compared
	if opts.JSON {
		return writeJSON(opts.IO.Out, c.doc)
	}
	return printComparison(opts, m, c)
}

func compute(opts *CompareOptions, m *llamacpp.Model, a, b string, kinds []models.Kind, mode lens.Mode) (*comparison, error) {
	to := opts.Model.tokenizeOptions()
	ids, err := tokenizePrompts(m, to, a, b)
	if err != nil {
		return nil, err
	}
	idsA, idsB := ids[0], ids[1]
	pairs, err := diff.ParsePositions(opts.Pos, len(idsA), len(idsB))
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	c := &comparison{pairs: pairs}
	c.doc.Model = opts.Model.Model
	c.doc.LensNorm = mode.String()
	for _, p := range pairs {
		c.doc.Positions = append(c.doc.Positions, posJSON{p.A, p.B})
	}
	toksA, toksB := tokenList(m, idsA), tokenList(m, idsB)
	c.doc.Warnings = tokenWarnings(toksA, toksB, pairs)

	// answers are decoded with the prompts, as extra sequences
	type answerSeq struct {
		text     string
		ids      []int32 // answer tokens as the model would produce them after each prompt
		inA, inB []int32 // full sequences
		note     string
		nA, nB   int // prompt lengths
	}
	var answers []answerSeq
	for _, ans := range opts.Answers {
		as := answerSeq{text: ans, nA: len(idsA), nB: len(idsB)}
		tailA, noteA, err := answerTokens(m, a, idsA, ans, to)
		if err != nil {
			return nil, err
		}
		tailB, noteB, err := answerTokens(m, b, idsB, ans, to)
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

	var hooks []models.Hook
	for l := range m.NLayer() {
		for _, k := range kinds {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
	}
	hooks = models.SortHooks(append(hooks, models.Hook{Kind: models.Logits, Layer: -1}))
	seqs := [][]int32{idsA, idsB}
	ctx, err := opts.Model.context(m, seqs, 2)
	if err != nil {
		return nil, err
	}
	defer ctx.Close()
	// Only the compared positions are kept, and llama.cpp computes logits
	// for those rows only: the output matrix over every position of both
	// prompts would cost more than the layers on small models.
	rowsA, rowsB := distinct(pairs, func(p diff.PosPair) int { return p.A }), distinct(pairs, func(p diff.PosPair) int { return p.B })
	rows, err := ctx.RunRows(seqs, [][]int{rowsA, rowsB}, hooks)
	if err != nil {
		return nil, err
	}
	ca, cb := rowsCache(rows[0], idsA, m.NLayer()), rowsCache(rows[1], idsB, m.NLayer())
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
		toks []tokenJSON
		c    *models.Cache
		pos  int
		row  int
	}{{a, toksA, ca, last.A, lastRow.A}, {b, toksB, cb, last.B, lastRow.B}} {
		lg := logitsRow(pr.c, pr.row)
		probs := lens.Softmax(nil, lg)
		p := promptJSON{Text: pr.text, Tokens: pr.toks, Pos: pr.pos}
		for _, t := range lens.TopK(lg, opts.TopK) {
			p.Top = append(p.Top, predTokenJSON{ID: t.ID, Piece: m.Printable(t.ID), Prob: float64(probs[t.ID]), Logit: t.Value})
		}
		c.doc.Prompts[i] = p
		c.modelTop[i] = p.Top[0].ID
	}

	// ranking
	var rankHooks []models.Hook
	for l := range m.NLayer() {
		for _, k := range kinds {
			rankHooks = append(rankHooks, models.Hook{Kind: k, Layer: l})
		}
	}
	c.comps, err = diff.Compare(ca, cb, models.SortHooks(rankHooks), rp)
	if err != nil {
		return nil, err
	}
	c.ranked, err = diff.Rank(c.comps, opts.Sort)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	for _, comp := range c.ranked {
		c.doc.Components = append(c.doc.Components, componentJSON{
			Hook: comp.Hook.Name(), Short: comp.Hook.Short(), Layer: comp.Hook.Layer, Kind: string(comp.Hook.Kind),
			L2: comp.L2, RelL2: comp.RelL2, Cosine: comp.Cosine, NormA: comp.NormA, NormB: comp.NormB,
		})
	}

	// logit lens of resid_post at every layer, at the last compared pair
	u, err := m.NewUnembedderWith(llamacpp.UnembedOptions{Threads: opts.Model.Threads, GPU: m.GPULayers() > 0, NoMmap: opts.Model.NoMmap})
	if err != nil {
		return nil, err
	}
	defer u.Close()
	d, nl, nv := m.NEmbd(), m.NLayer(), m.NVocab()
	x := make([]float32, 0, 2*nl*d)
	for l := range nl {
		h := models.Hook{Kind: models.ResidPost, Layer: l}
		ra, _ := ca.At(h)
		rb, _ := cb.At(h)
		x = append(x, ra.Row(lastRow.A)...)
		x = append(x, rb.Row(lastRow.B)...)
	}
	lg, err := u.Unembed(nil, x, 2*nl, mode)
	if err != nil {
		return nil, err
	}
	dl := make([]float32, nv)
	toLens := func(ts []lens.Token, sign float64) []lensTokenJSON {
		out := make([]lensTokenJSON, len(ts))
		for i, t := range ts {
			out[i] = lensTokenJSON{Piece: m.Printable(t.ID), ID: t.ID, Value: sign * t.Value}
		}
		return out
	}
	for l := range nl {
		la, lb := lg[(2*l)*nv:(2*l+1)*nv], lg[(2*l+1)*nv:(2*l+2)*nv]
		diff.SubTo(dl, la, lb)
		c.doc.Lens = append(c.doc.Lens, lensLayerJSON{
			Layer: l, Hook: models.Hook{Kind: models.ResidPost, Layer: l}.Name(),
			A: toLens(lens.TopK(la, opts.LensK), 1), B: toLens(lens.TopK(lb, opts.LensK), 1),
			AMinusB: toLens(lens.TopK(dl, opts.LensK), 1), BMinusA: toLens(lens.BottomK(dl, opts.LensK), -1),
		})
	}

	// neurons of the most different component
	if len(c.ranked) > 0 {
		top := c.ranked[0]
		ra, _ := ca.At(top.Hook)
		rb, _ := cb.At(top.Hook)
		// the pair where this component differs most
		best := top.PerPos[0]
		for _, pp := range top.PerPos {
			if pp.L2 > best.L2 {
				best = pp
			}
		}
		nj := &neuronsJSON{Hook: top.Hook.Name(), Pos: posJSON{rowsA[best.Pair.A], rowsB[best.Pair.B]}}
		for _, n := range diff.TopNeurons(ra.Row(best.Pair.A), rb.Row(best.Pair.B), opts.Neurons) {
			nj.Neurons = append(nj.Neurons, neuronJSON{n.Index, n.A, n.B, n.Diff})
		}
		c.doc.Neurons = nj
	}

	// answers: one more run with prompt + answer tokens fed in
	if len(answers) > 0 {
		var seqs [][]int32
		for _, as := range answers {
			seqs = append(seqs, as.inA, as.inB)
		}
		actx, err := opts.Model.context(m, seqs, 2)
		if err != nil {
			return nil, fmt.Errorf("scoring --answer runs each prompt with the answer after it (the tokens counted here): %w", err)
		}
		defer actx.Close()
		out, err := actx.Run(seqs, llamacpp.RunOptions{})
		if err != nil {
			return nil, err
		}
		for i, as := range answers {
			aj := answerJSON{Text: as.text, Tokens: tokenList(m, as.ids), Note: as.note}
			aj.A, aj.LogProbA = scoreAnswer(m, out[2*i], as.nA)
			aj.B, aj.LogProbB = scoreAnswer(m, out[2*i+1], as.nB)
			c.doc.Answers = append(c.doc.Answers, aj)
		}
	}
	return c, nil
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

// rowsCache turns the rows RunRows kept into a cache whose row k is the
// activation at position r.Positions[k].
func rowsCache(r *llamacpp.SeqRows, tokens []int32, nLayer int) *models.Cache {
	c := models.NewCache(tokens, nLayer)
	for _, a := range r.Acts {
		c.Set(a)
	}
	c.Set(&models.Activation{Hook: models.Hook{Kind: models.Logits, Layer: -1}, Width: r.Logits.Width, Data: r.Logits.Data})
	return c
}

func logitsRow(c *models.Cache, pos int) []float32 {
	a, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
	return a.Row(pos)
}

// answerTokens returns the tokens the model would have to produce after
// prompt to continue it with ans: the tail of tokenize(prompt+ans) after the
// prompt's own tokens. That is what matters for SentencePiece, which
// tokenizes " short" alone as a lone "▁" plus "▁short" but produces only
// "▁short" after a prompt. An empty answer is a usage error.
func answerTokens(m *llamacpp.Model, prompt string, promptIDs []int32, ans string, to llamacpp.TokenizeOptions) ([]int32, string, error) {
	if ans == "" {
		return nil, "", usageErr(`--answer is empty: give the text the model should produce next, with its leading space, e.g. --answer " she"`)
	}
	full, err := m.Tokenize(prompt+ans, to)
	if err != nil {
		return nil, "", err
	}
	noBOS := to
	noBOS.BOS = llamacpp.BOSNo
	alone, err := m.Tokenize(ans, noBOS)
	if err != nil {
		return nil, "", err
	}
	var note string
	prefix := len(full) > len(promptIDs)
	for i := 0; prefix && i < len(promptIDs); i++ {
		prefix = full[i] == promptIDs[i]
	}
	if !prefix {
		// the answer merges with the prompt's last token: score it as
		// tokenized alone and say so
		note = fmt.Sprintf("%q merges with the end of the prompt when tokenized together; scored as tokenized alone", ans)
		return alone, note, nil
	}
	tail := full[len(promptIDs):]
	if len(alone) > len(tail) && len(alone) > 0 && string(m.Piece(alone[0])) == " " {
		var ps []string
		for _, id := range alone {
			ps = append(ps, m.Printable(id))
		}
		note = fmt.Sprintf("tokenized alone, %q is %s (a lone ▁ first); after the prompt the model produces %d token(s), scored here", ans, strings.Join(ps, " | "), len(tail))
	}
	return tail, note, nil
}

// scoreAnswer scores the tokens after position n-1 of c's sequence (the
// answer tokens, each predicted from the prompt plus the earlier answer
// tokens).
func scoreAnswer(m *llamacpp.Model, c *models.Cache, n int) ([]answerScoreJSON, float64) {
	var out []answerScoreJSON
	total := 0.0
	for i := n; i < len(c.Tokens); i++ {
		lg := logitsRow(c, i-1)
		id := c.Tokens[i]
		lp := lens.LogSoftmaxAt(lg, id)
		total += lp
		out = append(out, answerScoreJSON{ID: id, Piece: m.Printable(id), Rank: lens.Rank(lg, id), Logit: float64(lg[id]), Prob: math.Exp(lp)})
	}
	return out, total
}

// tokenWarnings explains where the two tokenizations do not line up.
func tokenWarnings(a, b []tokenJSON, pairs []diff.PosPair) []string {
	var w []string
	if len(a) != len(b) {
		w = append(w, fmt.Sprintf("the prompts have different token counts (A %d, B %d): positions after the first difference do not line up", len(a), len(b)))
	}
	first := -1
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i].ID != b[i].ID {
			first = i
			break
		}
	}
	if first >= 0 {
		w = append(w, fmt.Sprintf("first differing token at position %d: A %q, B %q", first, a[first].Piece, b[first].Piece))
	}
	wa, wb := splitWords(a), splitWords(b)
	for _, x := range wa {
		if !hasWord(wb, x.Word, x.Tokens) {
			w = append(w, fmt.Sprintf("A splits %q into %d tokens", x.Word, x.Tokens))
		}
	}
	for _, x := range wb {
		if !hasWord(wa, x.Word, x.Tokens) {
			w = append(w, fmt.Sprintf("B splits %q into %d tokens", x.Word, x.Tokens))
		}
	}
	w = append(w, "comparing "+diff.Describe(pairs))
	return w
}

func hasWord(ws []wordJSON, word string, n int) bool {
	for _, w := range ws {
		if w.Word == word && w.Tokens == n {
			return true
		}
	}
	return false
}

func printComparison(opts *CompareOptions, m *llamacpp.Model, c *comparison) error {
	out := opts.IO.Out
	doc := &c.doc
	section := func(title string) {
		fmt.Fprintf(out, "\n== %s ==\n", title)
	}
	if !opts.NoTokens {
		section("tokens")
		a, b := doc.Prompts[0].Tokens, doc.Prompts[1].Tokens
		var rows [][]string
		for i := 0; i < max(len(a), len(b)); i++ {
			r := []string{fmt.Sprint(i), "", "", "", "", ""}
			if i < len(a) {
				r[1], r[2] = fmt.Sprint(a[i].ID), a[i].Piece
			}
			if i < len(b) {
				r[3], r[4] = fmt.Sprint(b[i].ID), b[i].Piece
			}
			if i >= len(a) || i >= len(b) || a[i].ID != b[i].ID {
				r[5] = "≠"
			}
			for _, p := range c.pairs {
				if p.A == i || p.B == i {
					r[5] += " ◀"
					break
				}
			}
			rows = append(rows, r)
		}
		if err := table(opts.IO, []string{"pos", "A id", "A piece", "B id", "B piece", ""}, rows); err != nil {
			return err
		}
		for _, w := range doc.Warnings {
			fmt.Fprintln(out, "note:", w)
		}
	}
	if !opts.NoPredictions {
		section(fmt.Sprintf("predictions (next token after A pos %d, B pos %d)", doc.Prompts[0].Pos, doc.Prompts[1].Pos))
		var rows [][]string
		for i := range opts.TopK {
			r := []string{fmt.Sprint(i + 1), "", "", ""}
			if i < len(doc.Prompts[0].Top) {
				t := doc.Prompts[0].Top[i]
				r[1] = fmt.Sprintf("%s  %.3f (%.2f)", t.Piece, t.Prob, t.Logit)
			}
			if i < len(doc.Prompts[1].Top) {
				t := doc.Prompts[1].Top[i]
				r[2] = fmt.Sprintf("%s  %.3f (%.2f)", t.Piece, t.Prob, t.Logit)
			}
			rows = append(rows, r[:3])
		}
		if err := table(opts.IO, []string{"#", "A: piece prob (logit)", "B: piece prob (logit)"}, rows); err != nil {
			return err
		}
		for _, ans := range doc.Answers {
			var ps []string
			for _, t := range ans.Tokens {
				ps = append(ps, t.Piece)
			}
			fmt.Fprintf(out, "answer %q → %s\n", ans.Text, strings.Join(ps, " | "))
			if ans.Note != "" {
				fmt.Fprintln(out, "  note:", ans.Note)
			}
			var rows [][]string
			for i := range ans.A {
				r := []string{ans.A[i].Piece,
					fmt.Sprintf("%d", ans.A[i].Rank), fmt.Sprintf("%.2f", ans.A[i].Logit), fmt.Sprintf("%.4f", ans.A[i].Prob), "", "", ""}
				if i < len(ans.B) {
					r[4], r[5], r[6] = fmt.Sprintf("%d", ans.B[i].Rank), fmt.Sprintf("%.2f", ans.B[i].Logit), fmt.Sprintf("%.4f", ans.B[i].Prob)
				}
				rows = append(rows, r)
			}
			rows = append(rows, []string{"(whole answer)", "", "", fmt.Sprintf("%.4f", math.Exp(ans.LogProbA)), "", "", fmt.Sprintf("%.4f", math.Exp(ans.LogProbB))})
			if err := table(opts.IO, []string{"token", "A rank", "A logit", "A prob", "B rank", "B logit", "B prob"}, rows); err != nil {
				return err
			}
		}
	}
	if !opts.NoRanking {
		section(fmt.Sprintf("components ranked by %s (top %d of %d)", sortName(opts.Sort), min(opts.Top, len(c.ranked)), len(c.ranked)))
		var rows [][]string
		for i, comp := range doc.Components[:min(opts.Top, len(doc.Components))] {
			rows = append(rows, []string{fmt.Sprint(i + 1), comp.Hook, fmt.Sprintf("%.4g", comp.L2), fmt.Sprintf("%.4f", comp.RelL2), fmt.Sprintf("%.4f", comp.Cosine)})
		}
		if err := table(opts.IO, []string{"#", "hook", "‖A−B‖", "rel", "cos(A,B)"}, rows); err != nil {
			return err
		}
	}
	if !opts.NoLayers {
		section("per layer: ‖A−B‖ / mean(‖A‖,‖B‖)")
		if err := printLayers(opts.IO, c); err != nil {
			return err
		}
	}
	if !opts.NoLens {
		section(fmt.Sprintf("logit lens of resid_post (A pos %d, B pos %d; differences: %s)", doc.Prompts[0].Pos, doc.Prompts[1].Pos,
			lensNormDesc(doc.LensNorm, m.Info.LayerNorm)))
		join := func(ts []lensTokenJSON) string {
			var s []string
			for _, t := range ts {
				s = append(s, t.Piece)
			}
			return strings.Join(s, " ")
		}
		var rows [][]string
		for _, l := range doc.Lens {
			rows = append(rows, []string{fmt.Sprint(l.Layer), join(l.A), join(l.B), join(l.AMinusB), join(l.BMinusA)})
		}
		if err := table(opts.IO, []string{"layer", "A", "B", "A−B", "B−A"}, rows); err != nil {
			return err
		}
		if n := len(doc.Lens); n > 0 && doc.LensNorm == "norm" {
			la, lb := doc.Lens[n-1].A, doc.Lens[n-1].B
			if len(la) > 0 && len(lb) > 0 && (la[0].ID != c.modelTop[0] || lb[0].ID != c.modelTop[1]) {
				fmt.Fprintln(out, "warning: the last layer's lens top-1 differs from the model's prediction; this build's graph may not match lldiff's hook table")
			}
		}
	}
	if !opts.NoNeurons && doc.Neurons != nil {
		nj := doc.Neurons
		section(fmt.Sprintf("neurons of %s (A pos %d, B pos %d), largest |A−B|", nj.Hook, nj.Pos.A, nj.Pos.B))
		var rows [][]string
		for _, n := range nj.Neurons {
			rows = append(rows, []string{fmt.Sprint(n.Index), fmt.Sprintf("%.4f", n.A), fmt.Sprintf("%.4f", n.B), fmt.Sprintf("%+.4f", n.Diff)})
		}
		if err := table(opts.IO, []string{"dim", "A", "B", "A−B"}, rows); err != nil {
			return err
		}
	}
	return nil
}

func sortName(s string) string {
	switch s {
	case "l2":
		return "‖A−B‖"
	case "cosine":
		return "cos(A,B), lowest first"
	}
	return "‖A−B‖ / mean(‖A‖,‖B‖)"
}

func lensNormDesc(s string, layerNorm bool) string {
	switch {
	case s == "gamma" && layerNorm:
		return "W_U·γ⊙(a−b), centred"
	case s == "gamma":
		return "W_U·γ⊙(a−b)"
	case s == "raw":
		return "W_U·(a−b)"
	case layerNorm:
		return "lens(a) − lens(b) through the final LayerNorm"
	}
	return "lens(a) − lens(b) through the final RMSNorm"
}

// printLayers prints one row per layer with the relative difference of each
// ranked kind and a bar for resid_post.
func printLayers(io *IOStreams, c *comparison) error {
	rows := diff.ByLayer(c.comps)
	kindSet := map[models.Kind]bool{}
	for _, r := range rows {
		for k := range r.Rel {
			kindSet[k] = true
		}
	}
	var kinds []models.Kind
	for _, k := range models.LayerKinds {
		if kindSet[k] {
			kinds = append(kinds, k)
		}
	}
	maxRel := 0.0
	for _, r := range rows {
		for _, v := range r.Rel {
			maxRel = math.Max(maxRel, v)
		}
	}
	header := []string{"layer"}
	for _, k := range kinds {
		header = append(header, string(k))
	}
	header = append(header, "largest")
	var out [][]string
	for _, r := range rows {
		row := []string{fmt.Sprint(r.Layer)}
		best, bestV := models.Kind(""), -1.0
		for _, k := range kinds {
			v, ok := r.Rel[k]
			if !ok {
				row = append(row, "")
				continue
			}
			row = append(row, fmt.Sprintf("%.4f", v))
			if v > bestV {
				best, bestV = k, v
			}
		}
		row = append(row, fmt.Sprintf("%-10s %s", best, bar(bestV, maxRel, 20)))
		out = append(out, row)
	}
	return table(io, header, out)
}

func bar(v, maxV float64, width int) string {
	if maxV <= 0 || v <= 0 {
		return ""
	}
	n := int(math.Round(v / maxV * float64(width)))
	return strings.Repeat("█", n)
}
