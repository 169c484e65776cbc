package cli

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// PatchOptions are the options of `lldiff patch`.
type PatchOptions struct {
	IO          *IOStreams
	Model       modelFlags
	Vision      visionFlags
	Clean       string
	Corrupt     string
	CleanFile   string
	CorruptFile string
	Answer      string
	Wrong       string
	// Kinds are the parsed --kinds, Layers the parsed --layers (resolved
	// against the model when it is loaded).
	Kinds       []models.Kind
	Layers      diff.Layers
	Pos         string
	Top         int
	FromCompare bool
	Prob        bool
	JSON        bool
	Plot        string
	HTML        string
	Force       bool
	Parallel    int
	Exact       bool
}

// patchKinds are the component kinds lldiff patch accepts.
var patchKinds = []models.Kind{models.ResidPre, models.Z, models.AttnOut, models.ResidMid, models.MLPOut, models.ResidPost}

func newCmdPatch(io *IOStreams, runF func(*PatchOptions) error) *cobra.Command {
	opts := &PatchOptions{IO: io}
	var kinds, layers string
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
			opts.Model.warnLimits(io)
			if cmd.Flags().Changed("top") && opts.Top == 0 {
				return usageErr("--top 0 would patch nothing: give a number >= 1, or leave --top out for 10")
			}
			if err := opts.check(kinds, layers); err != nil {
				return err
			}
			if err := checkPosFlag(opts.Pos); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return patchRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	opts.Vision.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.Clean, "clean", "", "the clean prompt, whose activations are patched in")
	f.StringVar(&opts.Corrupt, "corrupt", "", "the corrupt prompt, which is re-run with each patch")
	f.StringVar(&opts.CleanFile, "clean-file", "", "read the clean prompt from a file")
	f.StringVar(&opts.CorruptFile, "corrupt-file", "", "read the corrupt prompt from a file")
	f.StringVar(&opts.Answer, "answer", "", `the clean answer, e.g. " she" (required)`)
	f.StringVar(&opts.Wrong, "wrong", "", `the corrupt answer, e.g. " he": the metric becomes the logit difference answer − wrong`)
	f.StringVar(&kinds, "kinds", "resid_pre,attn_out,mlp_out,resid_post", "component kinds to patch")
	f.StringVar(&layers, "layers", "all", `layers to patch: all, or a list such as "0,3,-1"`)
	f.StringVar(&opts.Pos, "pos", "each", "positions: each, all (at once), last, or a list such as 5,-1 or 5:6")
	f.IntVar(&opts.Top, "top", 0, "with --from-compare: patch only the N components compare ranks highest (default 10)")
	f.BoolVar(&opts.FromCompare, "from-compare", false, "rank components as compare does and patch the --top N")
	f.BoolVar(&opts.Prob, "prob", false, "also print the answer probability of every patched run")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/patch.md)")
	f.StringVar(&opts.Plot, "plot", "", "write a heatmap to FILE.png or FILE.svg")
	f.BoolVar(&opts.Force, "force", false, "replace an existing --plot or --html file")
	addHTMLFlag(f, &opts.HTML, nil)
	f.IntVar(&opts.Parallel, "parallel", 0, "patched runs decoded together as separate sequences (default 16, fewer when memory is short)")
	f.IntVar(&opts.Parallel, "np", 0, "same as --parallel")
	f.BoolVar(&opts.Exact, "exact", false, "decode every patched run alone from position 0: bit-identical to a plain run, slower")
	return cmd
}

// check validates the flags that need no model, and parses --kinds and
// --layers (their text) into o.Kinds and o.Layers.
func (o *PatchOptions) check(kinds, layers string) error {
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
	var err error
	if o.Kinds, err = parsePatchKinds(kinds); err != nil {
		return err
	}
	if o.Layers, err = diff.ParseLayers("--layers", layers); err != nil {
		return &UsageError{Err: err}
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

// resolveLayers returns the layers of --layers in a model of n layers,
// refusing a choice that holds none of them.
func resolveLayers(l diff.Layers, n int) ([]int, error) {
	ls, err := l.Resolve(n)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	if len(ls) == 0 {
		return nil, usageErr("--layers %q: no layer of the model's %d (0..%d) is in the range", l.String(), n, n-1)
	}
	return ls, nil
}

// PatchJSON is the document `patch --json` prints (docs/patch.md).
type PatchJSON = analysis.PatchResult

func patchRun(opts *PatchOptions) error {
	clean, err := readPrompt(opts.Clean, opts.CleanFile, "the clean prompt")
	if err != nil {
		return err
	}
	corrupt, err := readPrompt(opts.Corrupt, opts.CorruptFile, "the corrupt prompt")
	if err != nil {
		return err
	}
	if clean == "" || corrupt == "" {
		return usageErr("the clean and the corrupt prompt must both have text")
	}
	if opts.Plot != "" {
		if err := checkOutFile(opts.Plot, "--plot", opts.Force); err != nil {
			return err
		}
	}
	if opts.HTML != "" && opts.HTML == opts.Plot {
		return usageErr("--html and --plot are both %s: give them different files", opts.HTML)
	}
	if err := checkHTMLFlag(opts.HTML, opts.Force); err != nil {
		return err
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	closeVision, err := opts.Vision.attach(m, opts.Model.Threads)
	if err != nil {
		return err
	}
	defer closeVision()
	for _, k := range opts.Kinds {
		if err := m.Hooks.Check(k); err != nil {
			return &UsageError{Err: err}
		}
	}
	layers, err := resolveLayers(opts.Layers, m.NLayer())
	if err != nil {
		return err
	}
	kvBytes := 4
	if strings.ToLower(opts.Model.KVType) == "f16" {
		kvBytes = 2
	}
	po := analysis.PatchOptions{
		Model: opts.Model.Model, Clean: clean, Corrupt: corrupt, Tokenize: opts.Model.tokenizeOptions(),
		Answer: opts.Answer, Wrong: opts.Wrong, Kinds: opts.Kinds, Layers: layers, Positions: opts.Pos,
		Exact: opts.Exact, Parallel: opts.Parallel, KVBytes: kvBytes,
	}
	if opts.FromCompare {
		po.Top = opts.Top
	}
	if opts.IO.IsTerminal && !opts.JSON {
		po.Progress = newProgress(opts.IO, "patching: %d/%d runs", true)
	}
	doc, err := analysis.Patch(opts.Model.engine(m), po)
	if err != nil {
		return flagAdvice(err)
	}
	if opts.Plot != "" {
		if err := writePatchPlot(opts.Plot, doc); err != nil {
			return fmt.Errorf("writing the plot: %w", err)
		}
	}
	if err := writeHTML(opts.HTML, report.KindPatch, doc); err != nil {
		return err
	}
	if opts.JSON {
		if err := writeJSON(opts.IO.Out, doc); err != nil {
			return err
		}
		noteHTML(opts.IO, true, opts.HTML)
		return nil
	}
	if err := printPatch(opts, doc); err != nil {
		return err
	}
	if opts.Plot != "" {
		fmt.Fprintf(opts.IO.Out, "wrote %s\n", opts.Plot)
	}
	noteHTML(opts.IO, false, opts.HTML)
	return nil
}

func printPatch(opts *PatchOptions, doc *PatchJSON) error {
	out := opts.IO.Out
	if doc.Summary != nil && doc.Summary.Text != "" {
		fmt.Fprintln(out, "\n== summary ==")
		for _, line := range wrapWords(safetext.Terminal(doc.Summary.Text), 92) {
			fmt.Fprintln(out, line)
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "metric: %s, normalised: 0 = corrupt run, 1 = clean run\n", doc.MetricDesc)
	for _, r := range []struct {
		name string
		p    *analysis.PatchPrompt
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
		if err := printPatchTables(opts, doc, "normalised metric", func(r *analysis.PatchedCell) string { return fmtNorm(r.Normalized) }); err != nil {
			return err
		}
		if opts.Prob {
			if err := printPatchTables(opts, doc, "P(answer)", func(r *analysis.PatchedCell) string { return fmt.Sprintf("%.4f", r.AnswerProb) }); err != nil {
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
func printPatchTables(opts *PatchOptions, doc *PatchJSON, what string, cell func(*analysis.PatchedCell) string) error {
	out := opts.IO.Out
	byKey := map[string]*analysis.PatchedCell{}
	key := func(kind string, layer int, pos []analysis.PatchPos) string { return fmt.Sprint(kind, layer, pos) }
	for i := range doc.Results {
		r := &doc.Results[i]
		byKey[key(r.Kind, r.Layer, r.Positions)] = r
	}
	if doc.Positions == "each" || doc.Positions == "list" {
		// the positions, in order of first appearance
		var cols [][]analysis.PatchPos
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
func posLabel(doc *PatchJSON, p analysis.PatchPos) string {
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
