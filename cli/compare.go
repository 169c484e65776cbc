package cli

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// CompareOptions are the options of `lldiff compare`.
type CompareOptions struct {
	IO    *IOStreams
	Model modelFlags
	A, B  string
	AFile string
	BFile string
	Pos   string
	Kinds string
	Sort  string
	Top   int
	TopK  int
	LensK int
	// Lens is the parsed --lens-norm.
	Lens    models.LensMode
	Neurons int
	Answers []string
	JSON    bool
	// ModelB is --model-b: run prompt A through this second model file
	// and compare the two models (cli/compare_modelb.go).
	ModelB string
	// LayerMap is --layer-map (A:B pairs).
	LayerMap string
	// HTML is --html: also write the report page there; Force replaces it.
	HTML  string
	Force bool

	NoTokens, NoPredictions, NoRanking, NoLayers, NoLens, NoNeurons bool

	// Vision is --mmproj; ImageA and ImageB put an image in front of
	// prompt A or B (--image-a, --image-b).
	Vision         visionFlags
	ImageA, ImageB string

	// kindsSet is set when --kinds was given: then a kind the architecture
	// lacks is an error, while the default list drops it with a note.
	kindsSet bool
}

func newCmdCompare(io *IOStreams, runF func(*CompareOptions) error) *cobra.Command {
	opts := &CompareOptions{IO: io}
	var lensNorm string
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
explicit pairs A:B such as 5:6. With images (--mmproj, <image:PATH> or
--image-a/--image-b): image (every image position; image:image pairs two
images position by position, image:last each with B's last token) and
image-mean (the mean over the image span), on either side of a pair
(docs/vision.md).

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
			opts.Model.warnLimits(io)
			opts.kindsSet = cmd.Flags().Changed("kinds")
			if err := checkPosFlag(opts.Pos); err != nil {
				return err
			}
			if opts.Top < 1 || opts.TopK < 1 || opts.LensK < 1 || opts.Neurons < 1 {
				return usageErr("--top, --top-k, --lens-k and --neurons take numbers >= 1")
			}
			var err error
			if opts.Lens, err = models.ParseLensMode(lensNorm); err != nil {
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
	opts.Vision.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.ImageA, "image-a", "", "put this image in front of prompt A (needs --mmproj)")
	f.StringVar(&opts.ImageB, "image-b", "", "put this image in front of prompt B (needs --mmproj)")
	f.StringVar(&opts.AFile, "a-file", "", "read prompt A from a file")
	f.StringVar(&opts.BFile, "b-file", "", "read prompt B from a file")
	f.StringVar(&opts.Pos, "pos", "last", "positions to compare: last, -1, 3, all, or pairs 3:4")
	f.StringVar(&opts.Kinds, "kinds", "resid_post,resid_mid,attn_out,mlp_out", "component kinds to rank")
	f.StringVar(&opts.Sort, "sort", "rel", "rank by rel (‖A−B‖/mean‖·‖), l2, or cosine (lowest first)")
	f.IntVar(&opts.Top, "top", 10, "components in the ranking table")
	f.IntVar(&opts.TopK, "top-k", 5, "predicted tokens per prompt")
	f.IntVar(&opts.LensK, "lens-k", 5, "tokens per logit-lens cell")
	f.StringVar(&lensNorm, "lens-norm", "norm", "logit lens normalisation: norm, gamma or raw")
	f.IntVar(&opts.Neurons, "neurons", 10, "dimensions shown for the most different component")
	f.StringArrayVar(&opts.Answers, "answer", nil, "score an answer continuation, e.g. --answer \" he\" (repeatable)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/compare-json.md)")
	f.StringVar(&opts.ModelB, "model-b", "", "compare two models on one prompt: a second GGUF file with the same tokenizer (docs/geometry.md)")
	f.StringVar(&opts.LayerMap, "layer-map", "", "with --model-b: the layer of B for each layer of A, A:B pairs such as 0:0,1:2,2:4 (default: the same layer, or the same relative depth)")
	addHTMLFlag(f, &opts.HTML, &opts.Force)
	f.BoolVar(&opts.NoTokens, "no-tokens", false, "hide the tokens section")
	f.BoolVar(&opts.NoPredictions, "no-predictions", false, "hide the predictions section")
	f.BoolVar(&opts.NoRanking, "no-ranking", false, "hide the ranking section")
	f.BoolVar(&opts.NoLayers, "no-layers", false, "hide the per-layer view")
	f.BoolVar(&opts.NoLens, "no-lens", false, "leave out the logit lens (not computed: on a 256k vocabulary it costs more than the decode)")
	f.BoolVar(&opts.NoNeurons, "no-neurons", false, "hide the neurons section")
	return cmd
}

// CompareJSON is the document `compare --json` prints
// (docs/compare-json.md).
type CompareJSON = analysis.CompareResult

func compareRun(opts *CompareOptions) error {
	if opts.HTML != "" && opts.ModelB != "" {
		return usageErr("--html draws the comparison of two prompts; it has no view of a --model-b comparison yet: leave out --html (--json has the whole result)")
	}
	if opts.ModelB != "" {
		return compareModelsRun(opts)
	}
	if opts.LayerMap != "" {
		return usageErr("--layer-map maps the layers of two models: give --model-b")
	}
	if err := checkHTMLFlag(opts.HTML, opts.Force); err != nil {
		return err
	}
	a, err := readPrompt(opts.A, opts.AFile, "prompt A")
	if err != nil {
		return err
	}
	b, err := readPrompt(opts.B, opts.BFile, "prompt B")
	if err != nil {
		return err
	}
	// a prompt of spaces is text (SentencePiece gives it tokens); only no
	// text at all is refused here
	if a, err = withImage(a, opts.ImageA, "--image-a", opts.Vision); err != nil {
		return err
	}
	if b, err = withImage(b, opts.ImageB, "--image-b", opts.Vision); err != nil {
		return err
	}
	if a == "" || b == "" {
		return usageErr("compare needs two non-empty prompts: lldiff compare -m MODEL \"prompt A\" \"prompt B\" (or --a-file/--b-file)")
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
	doc, err := analysis.Compare(opts.Model.engine(m), analysis.CompareOptions{
		Model: opts.Model.Model, A: a, B: b, Tokenize: opts.Model.tokenizeOptions(),
		Positions: opts.Pos, Kinds: kinds, Sort: opts.Sort,
		TopK: opts.TopK, LensK: opts.LensK, Neurons: opts.Neurons, Lens: opts.Lens, Answers: opts.Answers,
		NoLens: opts.NoLens,
	})
	if err != nil {
		return flagAdvice(err)
	}
	doc.Warnings = append(skipped, doc.Warnings...) // the last one says what is compared
	if err := writeHTML(opts.HTML, report.KindCompare, doc); err != nil {
		return err
	}
	if opts.JSON {
		err = writeJSON(opts.IO.Out, doc)
	} else {
		err = printComparison(opts, m, doc)
	}
	if err == nil {
		noteHTML(opts.IO, opts.JSON, opts.HTML)
	}
	return err
}

func printComparison(opts *CompareOptions, m *llamacpp.Model, doc *CompareJSON) error {
	out := opts.IO.Out
	section := func(title string) {
		fmt.Fprintf(out, "\n== %s ==\n", title)
	}
	if doc.Summary != nil && doc.Summary.Text != "" {
		section("summary")
		for _, line := range wrapWords(safetext.Terminal(doc.Summary.Text), 92) {
			fmt.Fprintln(out, line)
		}
	}
	if !opts.NoTokens {
		section("tokens")
		a, b := doc.Prompts[0].Tokens, doc.Prompts[1].Tokens
		var rows [][]string
		for i := 0; i < max(len(a), len(b)); i++ {
			// an image span shows as one row, at its first position
			inSpan := func(t []analysis.Token) bool { return i < len(t) && t[i].Image != nil && t[i].Image.Row > 0 }
			if (inSpan(a) || i >= len(a)) && (inSpan(b) || i >= len(b)) {
				continue
			}
			r := []string{fmt.Sprint(i), "", "", "", "", ""}
			if i < len(a) {
				r[1], r[2] = fmt.Sprint(a[i].ID), tokenCell(a, i)
			}
			if i < len(b) {
				r[3], r[4] = fmt.Sprint(b[i].ID), tokenCell(b, i)
			}
			if i >= len(a) || i >= len(b) || a[i].ID != b[i].ID {
				r[5] = "≠"
			}
			for _, p := range doc.Positions {
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
		// as many rows as there are predictions: --top-k is at most the
		// vocabulary (analysis.Compare clamps it)
		for i := range max(len(doc.Prompts[0].Top), len(doc.Prompts[1].Top)) {
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
		section(fmt.Sprintf("components ranked by %s (top %d of %d)", sortName(opts.Sort), min(opts.Top, len(doc.Components)), len(doc.Components)))
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
		if err := printLayers(opts.IO, doc.Layers); err != nil {
			return err
		}
	}
	if !opts.NoLens {
		section(fmt.Sprintf("logit lens of resid_post (A pos %d, B pos %d; differences: %s)", doc.Prompts[0].Pos, doc.Prompts[1].Pos,
			lensNormDesc(doc.LensNorm, m.Info.LayerNorm)))
		join := func(ts []analysis.LensToken) string {
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
			if len(la) > 0 && len(lb) > 0 && (la[0].ID != doc.Prompts[0].Top[0].ID || lb[0].ID != doc.Prompts[1].Top[0].ID) {
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
func printLayers(io *IOStreams, rows []diff.LayerRow) error {
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

// wrapWords breaks text into lines of at most width runes at spaces (a
// longer word stays whole).
func wrapWords(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		l := utf8.RuneCountInString(w)
		if n > 0 && n+1+l > width {
			lines = append(lines, cur.String())
			cur.Reset()
			n = 0
		}
		if n > 0 {
			cur.WriteByte(' ')
			n++
		}
		cur.WriteString(w)
		n += l
	}
	if n > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}
