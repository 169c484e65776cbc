package cli

import (
	"cmp"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

func init() {
	extraCommands = append(extraCommands, func(io *IOStreams) *cobra.Command { return newCmdPatch(io, nil) })
}

// PatchOptions are the options of `lldiff patch`.
type PatchOptions struct {
	IO          *IOStreams
	Model       modelFlags
	Clean       string
	Corrupt     string
	CleanFile   string
	CorruptFile string
	Answer      string
	Wrong       string
	Kinds       string
	Layers      string
	Pos         string
	Top         int
	FromCompare bool
	Prob        bool
	JSON        bool
	Plot        string
	Force       bool
	Parallel    int
	Exact       bool
}

// patchKinds are the component kinds lldiff patch accepts.
var patchKinds = []models.Kind{models.ResidPre, models.Z, models.AttnOut, models.ResidMid, models.MLPOut, models.ResidPost}

func newCmdPatch(io *IOStreams, runF func(*PatchOptions) error) *cobra.Command {
	opts := &PatchOptions{IO: io}
	cmd := &cobra.Command{
		Use:   `patch -m MODEL --clean "PROMPT" --corrupt "PROMPT" --answer " X" [--wrong " Y"]`,
		Short: "Activation patching: which components carry the clean answer (causal evidence)",
		Long: `Run the clean and the corrupt prompt, keep the clean activations, then re-run
the corrupt prompt once per component with that component's activation
replaced by the clean one, and measure how much of the clean behaviour comes
back.

Metric: the logit difference answer − wrong at the last prompt position
(first token of each; with --wrong), or the log-probability of the whole
answer (without --wrong), normalised so that 0 is the corrupt run and 1 the
clean run:  (patched − corrupt) / (clean − corrupt).  The probability of the
answer is reported as well. Answers are what the model would produce after
the prompt: " she" with its leading space.

Components (--kinds): resid_pre, resid_mid, resid_post, attn_out, mlp_out,
z (heads before W_O), at the layers of --layers. resid_pre of layer L+1 is
resid_post of layer L: they are patched once and shown under both names.

Positions (--pos):
  each   every position separately: a layer × position table per kind
         (equal token counts only)
  all    every position at once: one value per layer and kind
  last   the last prompt position only
  LIST   positions such as "5,-1", or clean:corrupt pairs such as "5:6"

With --top N --from-compare only the N components that compare ranks
highest (‖clean−corrupt‖ relative, at the same positions) are patched, and
both rankings are printed side by side with Spearman's rank correlation.

Speed: a patch at position p changes nothing before p, so the corrupt
prompt's KV cache up to p is reused and only the rest is recomputed; -np
variants are decoded together as separate sequences. --exact decodes every
variant alone from position 0 (bit-identical to a plain run, slower).`,
		Example: `  lldiff patch -m stories260K.gguf \
    --clean "Once upon a time, there was a little girl. One day," \
    --corrupt "Once upon a time, there was a little boy. One day," \
    --answer " she" --wrong " he" --plot patch.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Model.check(); err != nil {
				return err
			}
			if err := opts.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return patchRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Clean, "clean", "", "the clean prompt, whose activations are patched in")
	f.StringVar(&opts.Corrupt, "corrupt", "", "the corrupt prompt, which is re-run with each patch")
	f.StringVar(&opts.CleanFile, "clean-file", "", "read the clean prompt from a file")
	f.StringVar(&opts.CorruptFile, "corrupt-file", "", "read the corrupt prompt from a file")
	f.StringVar(&opts.Answer, "answer", "", `the clean answer, e.g. " she" (required)`)
	f.StringVar(&opts.Wrong, "wrong", "", `the corrupt answer, e.g. " he": the metric becomes the logit difference answer − wrong`)
	f.StringVar(&opts.Kinds, "kinds", "resid_pre,attn_out,mlp_out,resid_post", "component kinds to patch")
	f.StringVar(&opts.Layers, "layers", "all", `layers to patch: all, or a list such as "0,3,-1"`)
	f.StringVar(&opts.Pos, "pos", "each", "positions: each, all (at once), last, or a list such as 5,-1 or 5:6")
	f.IntVar(&opts.Top, "top", 0, "with --from-compare: patch only the N components compare ranks highest (default 10)")
	f.BoolVar(&opts.FromCompare, "from-compare", false, "rank components as compare does and patch the --top N")
	f.BoolVar(&opts.Prob, "prob", false, "also print the answer probability of every patched run")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/patch.md)")
	f.StringVar(&opts.Plot, "plot", "", "write a heatmap to FILE.png or FILE.svg")
	f.BoolVar(&opts.Force, "force", false, "replace an existing --plot file")
	f.IntVar(&opts.Parallel, "parallel", 0, "patched runs decoded together as separate sequences (default 16, fewer when memory is short)")
	f.IntVar(&opts.Parallel, "np", 0, "same as --parallel")
	f.BoolVar(&opts.Exact, "exact", false, "decode every patched run alone from position 0: bit-identical to a plain run, slower")
	return cmd
}

// check validates the flags that need no model.
func (o *PatchOptions) check() error {
	if o.Clean == "" && o.CleanFile == "" {
		return usageErr(`no clean prompt: pass --clean "..." (or --clean-file)`)
	}
	if o.Corrupt == "" && o.CorruptFile == "" {
		return usageErr(`no corrupt prompt: pass --corrupt "..." (or --corrupt-file)`)
	}
	if o.Answer == "" {
		return usageErr(`no answer: pass --answer " X", the token the clean prompt should produce (mind the leading space)`)
	}
	if o.Wrong != "" && o.Wrong == o.Answer {
		return usageErr("--answer and --wrong are both %q: the logit difference would be 0", o.Answer)
	}
	if o.Top < 0 || o.Parallel < 0 {
		return usageErr("--top and --parallel take numbers >= 0")
	}
	if o.Top > 0 && !o.FromCompare {
		return usageErr("--top N picks components from compare's ranking: add --from-compare")
	}
	if o.FromCompare && o.Top == 0 {
		o.Top = 10
	}
	if _, err := parsePatchKinds(o.Kinds); err != nil {
		return err
	}
	if o.Plot != "" {
		switch strings.ToLower(filepath.Ext(o.Plot)) {
		case ".png", ".svg":
		default:
			return usageErr("--plot %q: give a file ending in .png or .svg", o.Plot)
		}
	}
	return nil
}

// parsePatchKinds parses --kinds: patchable kinds without layers.
func parsePatchKinds(s string) ([]models.Kind, error) {
	var kinds []models.Kind
	for _, part := range strings.Split(s, ",") {
		k := models.Kind(strings.TrimSpace(part))
		if !slices.Contains(patchKinds, k) {
			var names []string
			for _, pk := range patchKinds {
				names = append(names, string(pk))
			}
			return nil, usageErr("--kinds: %q is not a component kind that can be patched (kinds: %s; give kinds without layers and choose layers with --layers)",
				part, strings.Join(names, ", "))
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return kinds, nil
}

// parseLayers parses --layers for a model of n layers.
func parseLayers(s string, n int) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" || s == "*" {
		ls := make([]int, n)
		for i := range ls {
			ls[i] = i
		}
		return ls, nil
	}
	var ls []int
	for _, part := range strings.Split(s, ",") {
		l, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return nil, usageErr("--layers: %q is not a layer number (give all, or numbers such as 0,3,-1)", part)
		}
		orig := l
		if l < 0 {
			l += n
		}
		if l < 0 || l >= n {
			return nil, usageErr("--layers: layer %d is out of range: the model has %d layers (0..%d, or -1..-%d from the end)", orig, n, n-1, n)
		}
		if !slices.Contains(ls, l) {
			ls = append(ls, l)
		}
	}
	slices.Sort(ls)
	return ls, nil
}

// PatchJSON is the document `patch --json` prints (docs/patch.md).
type PatchJSON struct {
	Model string `json:"model"`
	// Metric is "logit_diff" (answer − wrong, first tokens, at the last
	// prompt position) or "logprob" (log-probability of the whole answer).
	Metric     string           `json:"metric"`
	MetricDesc string           `json:"metric_desc"`
	Answer     patchAnswerJSON  `json:"answer"`
	Wrong      *patchAnswerJSON `json:"wrong,omitempty"`
	Clean      patchPromptJSON  `json:"clean"`
	Corrupt    patchPromptJSON  `json:"corrupt"`
	// Positions is the --pos mode: each, all, last or list.
	Positions string            `json:"positions"`
	Kinds     []string          `json:"kinds"`
	Layers    []int             `json:"layers"`
	Results   []patchResultJSON `json:"results"`
	// FromCompare is set with --from-compare.
	FromCompare *fromCompareJSON `json:"from_compare,omitempty"`
	Notes       []string         `json:"notes"`
	Runs        int              `json:"runs"`
	Tokens      int              `json:"tokens_decoded"`
	Seconds     float64          `json:"seconds"`
	RunsPerSec  float64          `json:"runs_per_second"`
}

type patchAnswerJSON struct {
	Text string `json:"text"`
	// Tokens are the answer's tokens after the corrupt prompt.
	Tokens []tokenJSON `json:"tokens"`
	Note   string      `json:"note,omitempty"`
}

type patchPromptJSON struct {
	Text   string      `json:"text"`
	Tokens []tokenJSON `json:"tokens"`
	patchScoreJSON
}

// patchScoreJSON are the scores of one run.
type patchScoreJSON struct {
	Metric        float64  `json:"metric"`
	LogitDiff     *float64 `json:"logit_diff,omitempty"`
	AnswerLogProb float64  `json:"answer_logprob"`
	AnswerProb    float64  `json:"answer_prob"`
}

type patchPosJSON struct {
	Clean   int `json:"clean"`
	Corrupt int `json:"corrupt"`
}

type patchResultJSON struct {
	Hook  string `json:"hook"`
	Short string `json:"short"`
	Kind  string `json:"kind"`
	Layer int    `json:"layer"`
	// Positions are the patched positions: one pair, or every pair for
	// --pos all.
	Positions []patchPosJSON `json:"positions"`
	// Normalized is (metric − corrupt) / (clean − corrupt).
	Normalized float64 `json:"normalized"`
	patchScoreJSON
}

type fromCompareJSON struct {
	Top int `json:"top"`
	// Spearman is the rank correlation between compare's relative
	// difference and |normalized|; null when undefined.
	Spearman   *float64            `json:"spearman"`
	Components []compareRankedJSON `json:"components"`
}

type compareRankedJSON struct {
	Hook        string         `json:"hook"`
	Positions   []patchPosJSON `json:"positions"`
	CompareRank int            `json:"compare_rank"`
	RelL2       float64        `json:"rel_l2"`
	PatchRank   int            `json:"patch_rank"`
	Normalized  float64        `json:"normalized"`
}

// patchCell is one component to patch: a hook at some positions.
type patchCell struct {
	hook  models.Hook
	pairs []diff.PosPair // A: clean position, B: corrupt position
	rel   float64        // compare's relative difference (--from-compare)
}

// patchMetric scores runs from the logits at the metric positions: the
// last prompt position and, for answers of several tokens, the positions
// of the answer tokens before the last.
type patchMetric struct {
	answer []int32 // answer tokens after the prompt
	wrong  int32   // first wrong token, or -1
}

func (pm patchMetric) score(rows []float32, nVocab int) patchScoreJSON {
	var s patchScoreJSON
	for j, id := range pm.answer {
		s.AnswerLogProb += lens.LogSoftmaxAt(rows[j*nVocab:(j+1)*nVocab], id)
	}
	s.AnswerProb = math.Exp(s.AnswerLogProb)
	s.Metric = s.AnswerLogProb
	if pm.wrong >= 0 {
		ld := float64(rows[pm.answer[0]]) - float64(rows[pm.wrong])
		s.LogitDiff = &ld
		s.Metric = ld
	}
	return s
}

func patchRun(opts *PatchOptions) error {
	clean, err := readPrompt(opts.Clean, opts.CleanFile, "the clean prompt")
	if err != nil {
		return err
	}
	corrupt, err := readPrompt(opts.Corrupt, opts.CorruptFile, "the corrupt prompt")
	if err != nil {
		return err
	}
	if strings.TrimSpace(clean) == "" || strings.TrimSpace(corrupt) == "" {
		return usageErr("the clean and the corrupt prompt must both have text")
	}
	kinds, _ := parsePatchKinds(opts.Kinds)
	if opts.Plot != "" {
		if err := checkOutFile(opts.Plot, "--plot", opts.Force); err != nil {
			return err
		}
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	for _, k := range kinds {
		if err := m.Hooks.Check(k); err != nil {
			return &UsageError{Err: err}
		}
	}
	layers, err := parseLayers(opts.Layers, m.NLayer())
	if err != nil {
		return err
	}
	doc, cells, err := patchCompute(opts, m, clean, corrupt, kinds, layers)
	if err != nil {
		return err
	}
	if opts.Plot != "" {
		if err := writePatchPlot(opts.Plot, doc); err != nil {
			return fmt.Errorf("writing the plot: %w", err)
		}
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	if err := printPatch(opts, doc, cells); err != nil {
		return err
	}
	if opts.Plot != "" {
		fmt.Fprintf(opts.IO.Out, "wrote %s\n", opts.Plot)
	}
	return nil
}

// alignPositions pairs positions of the clean and the corrupt prompt when
// their token counts differ: the common prefix position by position, the
// rest aligned from the end (the last token with the last token), so that
// a word that takes another number of tokens shifts nothing after it.
// Positions of the longer prompt with no partner are left out.
func alignPositions(clean, corrupt []int32) []diff.PosPair {
	pre := 0
	for pre < min(len(clean), len(corrupt)) && clean[pre] == corrupt[pre] {
		pre++
	}
	var pairs []diff.PosPair
	for q := range corrupt {
		if q < pre {
			pairs = append(pairs, diff.PosPair{A: q, B: q})
			continue
		}
		if c := q + len(clean) - len(corrupt); c >= pre && c < len(clean) {
			pairs = append(pairs, diff.PosPair{A: c, B: q})
		}
	}
	return pairs
}

// patchPositions resolves --pos into groups of position pairs: one group
// per patched cell of a component.
func patchPositions(spec string, clean, corrupt []int32) (mode string, groups [][]diff.PosPair, notes []string, err error) {
	nc, nk := len(clean), len(corrupt)
	equal := nc == nk
	unequal := fmt.Sprintf("the clean prompt has %d tokens and the corrupt one %d, so position i of one is not position i of the other: "+
		"patching position by position would write activations into the wrong token. Use --pos last (the last position of each), "+
		"--pos all (every position at once, the differing span aligned from the end), explicit clean:corrupt pairs such as --pos %d:%d, "+
		"or reword the prompts so that they tokenize to the same length (lldiff tokenize shows the split)", nc, nk, nc-1, nk-1)
	switch s := strings.TrimSpace(spec); s {
	case "", "each":
		if !equal {
			return "", nil, nil, usageErr("--pos each: %s", unequal)
		}
		for i := range nk {
			groups = append(groups, []diff.PosPair{{A: i, B: i}})
		}
		return "each", groups, nil, nil
	case "all":
		pairs := alignPositions(clean, corrupt)
		if !equal {
			notes = append(notes, fmt.Sprintf("--pos all with %d clean and %d corrupt tokens: %d positions patched, the common prefix in place and the rest aligned from the end",
				nc, nk, len(pairs)))
		}
		return "all", [][]diff.PosPair{pairs}, notes, nil
	case "last":
		return "last", [][]diff.PosPair{{{A: nc - 1, B: nk - 1}}}, nil, nil
	default:
		if !equal {
			for _, part := range strings.Split(s, ",") {
				part = strings.TrimSpace(part)
				if !strings.Contains(part, ":") && part != "last" && part != "-1" {
					return "", nil, nil, usageErr("--pos %s: %s", part, unequal)
				}
			}
		}
		pairs, err := diff.ParsePositions(s, nc, nk)
		if err != nil {
			return "", nil, nil, &UsageError{Err: fmt.Errorf("--pos: %w (A is the clean prompt, B the corrupt one)", err)}
		}
		for _, p := range pairs {
			groups = append(groups, []diff.PosPair{p})
		}
		return "list", groups, nil, nil
	}
}

func pairsJSON(pairs []diff.PosPair) []patchPosJSON {
	out := make([]patchPosJSON, len(pairs))
	for i, p := range pairs {
		out[i] = patchPosJSON{Clean: p.A, Corrupt: p.B}
	}
	return out
}

// patchParallel returns how many variants to decode together: -np, or 16,
// fewer when the KV cache for them would pass 1 GiB.
func patchParallel(opts *PatchOptions, m *llamacpp.Model, n, variants int) int {
	if opts.Exact {
		return 1
	}
	p := opts.Parallel
	if p == 0 {
		p = 16
		bytes := 4
		if strings.ToLower(opts.Model.KVType) == "f16" {
			bytes = 2
		}
		perToken := 2 * m.Info.NLayer * m.Info.NHeadKV * m.Info.DHead * bytes
		for p > 1 && (p+1)*n*perToken > 1<<30 {
			p /= 2
		}
	}
	return max(1, min(p, variants, 255))
}

func patchCompute(opts *PatchOptions, m *llamacpp.Model, clean, corrupt string, kinds []models.Kind, layers []int) (*PatchJSON, []patchCell, error) {
	to := opts.Model.tokenizeOptions()
	ids, err := tokenizePrompts(m, to, clean, corrupt)
	if err != nil {
		return nil, nil, err
	}
	idsC, idsK := ids[0], ids[1]
	mode, groups, notes, err := patchPositions(opts.Pos, idsC, idsK)
	if err != nil {
		return nil, nil, err
	}
	doc := &PatchJSON{
		Model: opts.Model.Model, Positions: mode, Layers: layers, Notes: append([]string{}, notes...),
		Clean:   patchPromptJSON{Text: clean, Tokens: tokenList(m, idsC)},
		Corrupt: patchPromptJSON{Text: corrupt, Tokens: tokenList(m, idsK)},
	}
	for _, k := range kinds {
		doc.Kinds = append(doc.Kinds, string(k))
	}

	// answer tokens after each prompt; the runs decode prompt + answer
	ansC, noteC, err := answerTokens(m, clean, idsC, opts.Answer, to)
	if err != nil {
		return nil, nil, err
	}
	ansK, noteK, err := answerTokens(m, corrupt, idsK, opts.Answer, to)
	if err != nil {
		return nil, nil, err
	}
	if len(ansC) == 0 || len(ansK) == 0 {
		return nil, nil, usageErr("--answer %q gives no tokens", opts.Answer)
	}
	doc.Answer = patchAnswerJSON{Text: opts.Answer, Tokens: tokenList(m, ansK), Note: cmp.Or(noteK, noteC)}
	metC, metK := patchMetric{answer: ansC, wrong: -1}, patchMetric{answer: ansK, wrong: -1}
	if opts.Wrong != "" {
		wC, _, err := answerTokens(m, clean, idsC, opts.Wrong, to)
		if err != nil {
			return nil, nil, err
		}
		wK, noteW, err := answerTokens(m, corrupt, idsK, opts.Wrong, to)
		if err != nil {
			return nil, nil, err
		}
		if len(wC) == 0 || len(wK) == 0 {
			return nil, nil, usageErr("--wrong %q gives no tokens", opts.Wrong)
		}
		if wK[0] == ansK[0] || wC[0] == ansC[0] {
			return nil, nil, usageErr("--answer %q and --wrong %q start with the same token %s: their logit difference is 0; choose answers whose first tokens differ",
				opts.Answer, opts.Wrong, m.Printable(wK[0]))
		}
		metC.wrong, metK.wrong = wC[0], wK[0]
		doc.Wrong = &patchAnswerJSON{Text: opts.Wrong, Tokens: tokenList(m, wK), Note: noteW}
		doc.Metric = "logit_diff"
		doc.MetricDesc = fmt.Sprintf("logit(%s) − logit(%s) at the last prompt position", m.Printable(ansK[0]), m.Printable(wK[0]))
		if len(ansK) > 1 || len(wK) > 1 {
			doc.Notes = append(doc.Notes, "the logit difference compares the first token of each answer; answer_prob is the probability of the whole answer")
		}
	} else {
		doc.Metric = "logprob"
		var ps []string
		for _, id := range ansK {
			ps = append(ps, m.Printable(id))
		}
		doc.MetricDesc = fmt.Sprintf("log P(%s) after the prompt", strings.Join(ps, " "))
	}
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
	for _, l := range layers {
		for _, k := range kinds {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
	}
	hooks = models.SortHooks(hooks)
	var cells []patchCell
	for _, h := range hooks {
		for _, g := range groups {
			cells = append(cells, patchCell{hook: h, pairs: g})
		}
	}

	// contexts: the size the parallel patch runs need
	par := patchParallel(opts, m, len(seqK), len(cells))
	ctxSeqs := make([][]int32, par+1)
	for i := range ctxSeqs {
		ctxSeqs[i] = seqK
	}
	ctxSeqs[0] = seqC
	ctx, err := opts.Model.context(m, ctxSeqs, par+1)
	if err != nil {
		return nil, nil, err
	}
	defer ctx.Close()
	captured := append(slices.Clone(hooks), models.Hook{Kind: models.Logits, Layer: -1})
	// one sequence per Run: decoded alone, as the patched runs' base is
	cacheC, err := ctx.Run([][]int32{seqC}, llamacpp.RunOptions{Hooks: captured})
	if err != nil {
		return nil, nil, err
	}
	nv := m.NVocab()
	rowsAt := func(c *models.Cache, ps []int) []float32 {
		lg, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
		var out []float32
		for _, p := range ps {
			out = append(out, lg.Row(p)...)
		}
		return out
	}
	doc.Clean.patchScoreJSON = metC.score(rowsAt(cacheC[0], metricPos(len(idsC), len(ansC))), nv)

	cacheK, err := ctx.Run([][]int32{seqK}, llamacpp.RunOptions{Hooks: captured})
	if err != nil {
		return nil, nil, err
	}
	if opts.FromCompare {
		if cells, err = rankCells(cacheC[0], cacheK[0], hooks, groups, opts.Top, &doc.Notes); err != nil {
			return nil, nil, err
		}
	}

	// One variant per distinct (node, positions): resid_pre.L+1 is
	// resid_post.L. A patch that writes the values the corrupt run already
	// has (positions before the first differing token) changes nothing:
	// it is not run, and scores as the corrupt run, exactly.
	variantOf := make([]int, len(cells))
	var variants [][]llamacpp.Patch
	seen := map[string]int{}
	noops := 0
	for i, cell := range cells {
		node, _ := m.Hooks.Node(cell.hook)
		key := fmt.Sprint(node, cell.pairs)
		if v, ok := seen[key]; ok {
			variantOf[i] = v
			continue
		}
		actC, _ := cacheC[0].At(cell.hook)
		actK, _ := cacheK[0].At(cell.hook)
		p := llamacpp.Patch{Hook: cell.hook}
		same := true
		for _, pr := range cell.pairs {
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
		variants = append(variants, []llamacpp.Patch{p})
	}
	if noops > 0 {
		what := "patches write"
		if noops == 1 {
			what = "patch writes"
		}
		doc.Notes = append(doc.Notes, fmt.Sprintf("%d %s the values the corrupt run already has (tokens before the first difference): not re-run, scored as the corrupt run", noops, what))
	}

	po := llamacpp.PatchOptions{Logits: metricPos(len(idsK), len(ansK)), Plain: opts.Exact, Parallel: par}
	if opts.IO.IsTerminal && !opts.JSON {
		po.Progress = func(done, total int) {
			fmt.Fprintf(opts.IO.ErrOut, "\rpatching: %d/%d runs", done, total)
			if done == total {
				fmt.Fprintln(opts.IO.ErrOut)
			}
		}
	}
	t0 := time.Now()
	res, err := ctx.Patch(seqK, variants, po)
	if err != nil {
		return nil, nil, err
	}
	doc.Seconds = time.Since(t0).Seconds()
	doc.Runs, doc.Tokens = len(variants), res.Tokens
	if doc.Seconds > 0 {
		doc.RunsPerSec = float64(len(variants)) / doc.Seconds
	}
	doc.Corrupt.patchScoreJSON = metK.score(res.Base, nv)
	lo, hi := doc.Corrupt.Metric, doc.Clean.Metric
	if !(math.Abs(hi-lo) > 1e-6*max(1, math.Abs(hi), math.Abs(lo))) {
		return nil, nil, fmt.Errorf("the metric (%s) is %.4g for the clean and %.4g for the corrupt run: there is no difference for patching to restore; "+
			"check with lldiff compare that the prompts change the answer, and that --answer is the clean prompt's answer", doc.MetricDesc, hi, lo)
	}
	if hi < lo {
		doc.Notes = append(doc.Notes, fmt.Sprintf("the corrupt run scores higher than the clean run (%.4g > %.4g): were --clean and --corrupt, or --answer and --wrong, swapped?", lo, hi))
	}
	for i, cell := range cells {
		s := doc.Corrupt.patchScoreJSON
		if v := variantOf[i]; v >= 0 {
			s = metK.score(res.Variants[v], nv)
		}
		doc.Results = append(doc.Results, patchResultJSON{
			Hook: cell.hook.Name(), Short: cell.hook.Short(), Kind: string(cell.hook.Kind), Layer: cell.hook.Layer,
			Positions: pairsJSON(cell.pairs), Normalized: (s.Metric - lo) / (hi - lo), patchScoreJSON: s,
		})
	}
	if opts.FromCompare {
		doc.FromCompare = compareVsPatch(cells, doc.Results, opts.Top)
	}
	return doc, cells, nil
}

// rankCells returns the top cells by compare's relative difference between
// the clean and the corrupt activations at the cells' positions, one cell
// per distinct activation.
func rankCells(a, b *models.Cache, hooks []models.Hook, groups [][]diff.PosPair, top int, notes *[]string) ([]patchCell, error) {
	var cands []patchCell
	for _, g := range groups {
		comps, err := diff.Compare(a, b, hooks, g)
		if err != nil {
			return nil, err
		}
		for _, c := range comps {
			cands = append(cands, patchCell{hook: c.Hook, pairs: g, rel: c.RelL2})
		}
	}
	slices.SortStableFunc(cands, func(x, y patchCell) int {
		if c := cmp.Compare(y.rel, x.rel); c != 0 {
			return c
		}
		return cmp.Compare(x.hook.Layer, y.hook.Layer)
	})
	// resid_pre.L+1 is resid_post.L: keep the first of the two
	var out []patchCell
	seen := map[string]bool{}
	for _, c := range cands {
		h := c.hook
		if h.Kind == models.ResidPre && h.Layer > 0 {
			h = models.Hook{Kind: models.ResidPost, Layer: h.Layer - 1}
		}
		key := fmt.Sprint(h, c.pairs)
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

// compareVsPatch puts compare's ranking of cells (the order of cells) next
// to the ranking by |normalized| patching effect.
func compareVsPatch(cells []patchCell, results []patchResultJSON, top int) *fromCompareJSON {
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
	fc := &fromCompareJSON{Top: top}
	rel := make([]float64, len(cells))
	eff := make([]float64, len(cells))
	for i, c := range cells {
		rel[i], eff[i] = c.rel, math.Abs(results[i].Normalized)
		fc.Components = append(fc.Components, compareRankedJSON{
			Hook: c.hook.Name(), Positions: pairsJSON(c.pairs), CompareRank: i + 1, RelL2: c.rel,
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

func printPatch(opts *PatchOptions, doc *PatchJSON, cells []patchCell) error {
	out := opts.IO.Out
	fmt.Fprintf(out, "metric: %s, normalised: 0 = corrupt run, 1 = clean run\n", doc.MetricDesc)
	for _, r := range []struct {
		name string
		p    *patchPromptJSON
	}{{"clean", &doc.Clean}, {"corrupt", &doc.Corrupt}} {
		fmt.Fprintf(out, "  %-8s metric %8.4f   P(%s) = %.4f\n", r.name, r.p.Metric, doc.Answer.Text, r.p.AnswerProb)
	}
	if doc.Answer.Note != "" {
		fmt.Fprintln(out, "note:", doc.Answer.Note)
	}
	for _, n := range doc.Notes {
		fmt.Fprintln(out, "note:", n)
	}
	if diffs := differingPositions(doc); len(diffs) > 0 && doc.Positions == "each" {
		fmt.Fprintf(out, "tokens that differ (clean → corrupt): %s\n", strings.Join(diffs, ", "))
	}
	if doc.FromCompare != nil {
		if err := printFromCompare(opts, doc); err != nil {
			return err
		}
	} else {
		if err := printPatchTables(opts, doc, "normalised metric", func(r *patchResultJSON) string { return fmtNorm(r.Normalized) }); err != nil {
			return err
		}
		if opts.Prob {
			if err := printPatchTables(opts, doc, "P(answer)", func(r *patchResultJSON) string { return fmt.Sprintf("%.4f", r.AnswerProb) }); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "%d patched runs (%d tokens decoded) in %.2fs: %.1f runs/s\n", doc.Runs, doc.Tokens, doc.Seconds, doc.RunsPerSec)
	return nil
}

func differingPositions(doc *PatchJSON) []string {
	var out []string
	a, b := doc.Clean.Tokens, doc.Corrupt.Tokens
	for i := range min(len(a), len(b)) {
		if a[i].ID != b[i].ID {
			out = append(out, fmt.Sprintf("%d %s → %s", i, a[i].Piece, b[i].Piece))
		}
	}
	return out
}

// printPatchTables prints, for --pos each or a list, one layer × position
// table per kind; otherwise one layer × kind table.
func printPatchTables(opts *PatchOptions, doc *PatchJSON, what string, cell func(*patchResultJSON) string) error {
	out := opts.IO.Out
	byKey := map[string]*patchResultJSON{}
	key := func(kind string, layer int, pos []patchPosJSON) string { return fmt.Sprint(kind, layer, pos) }
	for i := range doc.Results {
		r := &doc.Results[i]
		byKey[key(r.Kind, r.Layer, r.Positions)] = r
	}
	if doc.Positions == "each" || doc.Positions == "list" {
		// the positions, in order of first appearance
		var cols [][]patchPosJSON
		seen := map[string]bool{}
		for _, r := range doc.Results {
			k := fmt.Sprint(r.Positions)
			if !seen[k] {
				seen[k] = true
				cols = append(cols, r.Positions)
			}
		}
		for _, kind := range doc.Kinds {
			fmt.Fprintf(out, "\n== %s: %s (layer × position of the corrupt prompt) ==\n", kind, what)
			header := []string{"layer"}
			for _, c := range cols {
				header = append(header, posLabel(doc, c[0]))
			}
			var rows [][]string
			for _, l := range doc.Layers {
				row := []string{fmt.Sprint(l)}
				for _, c := range cols {
					v := ""
					if r := byKey[key(kind, l, c)]; r != nil {
						v = cell(r)
					}
					row = append(row, v)
				}
				rows = append(rows, row)
			}
			if err := table(opts.IO, header, rows); err != nil {
				return err
			}
		}
		return nil
	}
	desc := "every position at once"
	if doc.Positions == "last" {
		desc = "last position"
	}
	fmt.Fprintf(out, "\n== %s, %s (layer × kind) ==\n", what, desc)
	header := append([]string{"layer"}, doc.Kinds...)
	var rows [][]string
	for _, l := range doc.Layers {
		row := []string{fmt.Sprint(l)}
		for _, kind := range doc.Kinds {
			v := ""
			for i := range doc.Results {
				if r := &doc.Results[i]; r.Kind == kind && r.Layer == l {
					v = cell(r)
				}
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	return table(opts.IO, header, rows)
}

// posLabel names a patched position by the corrupt prompt's token, with
// the clean position too when they differ.
func posLabel(doc *PatchJSON, p patchPosJSON) string {
	piece := ""
	if p.Corrupt < len(doc.Corrupt.Tokens) {
		piece = doc.Corrupt.Tokens[p.Corrupt].Piece
	}
	if p.Clean != p.Corrupt {
		return fmt.Sprintf("%d:%d %s", p.Clean, p.Corrupt, piece)
	}
	return fmt.Sprintf("%d %s", p.Corrupt, piece)
}

func printFromCompare(opts *PatchOptions, doc *PatchJSON) error {
	fc := doc.FromCompare
	fmt.Fprintf(opts.IO.Out, "\n== the %d components compare ranks highest, and what patching each does ==\n", len(fc.Components))
	var rows [][]string
	for _, c := range fc.Components {
		pos := "all"
		if len(c.Positions) == 1 {
			pos = posLabel(doc, c.Positions[0])
		}
		rows = append(rows, []string{fmt.Sprint(c.CompareRank), c.Hook, pos, fmt.Sprintf("%.4f", c.RelL2), fmtSigned(c.Normalized), fmt.Sprint(c.PatchRank)})
	}
	if err := table(opts.IO, []string{"compare #", "hook", "pos", "rel ‖clean−corrupt‖", "patch effect", "patch #"}, rows); err != nil {
		return err
	}
	if fc.Spearman != nil {
		fmt.Fprintf(opts.IO.Out, "Spearman rank correlation between compare's difference and |patch effect|: %+.3f over %d components\n", *fc.Spearman, len(fc.Components))
		fmt.Fprintln(opts.IO.Out, "(near 1: the components that differ most are the ones that carry the answer; near 0 or below: the biggest differences are not the causal ones)")
	} else {
		fmt.Fprintln(opts.IO.Out, "Spearman rank correlation: undefined (fewer than two components, or all effects equal)")
	}
	return nil
}

// sameBits reports whether a and b hold the same float32 values, bit for
// bit.
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

// fmtSigned is fmtNorm with a sign on non-zero values.
func fmtSigned(v float64) string {
	s := fmtNorm(v)
	if s != "0.000" && v > 0 {
		s = "+" + s
	}
	return s
}

// fmtNorm formats a normalised value; a value that rounds to zero prints
// without a sign.
func fmtNorm(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	if s == "-0.000" {
		s = "0.000"
	}
	return s
}
