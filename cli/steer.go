package cli

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/safetext"
)

// SteerOptions are the options of `lldiff steer`, parsed and checked.
type SteerOptions struct {
	IO         *IOStreams
	Model      modelFlags
	Prompt     string
	PromptFile string
	Cvec       string
	// Direction is --direction "A|B": steer along A − B (resid_post of
	// each layer at the prompts' last tokens) instead of a --cvec file.
	Direction string
	// Scales are the parsed --scale; Layers the parsed --layer-range.
	Scales    []float64
	Layers    diff.Layers
	N         int
	TopK      int
	Answers   []string
	IgnoreEOS bool
	JSON      bool
}

func newCmdSteer(io *IOStreams, runF func(*SteerOptions) error) *cobra.Command {
	opts := &SteerOptions{IO: io}
	var scale, layerRange string
	cmd := &cobra.Command{
		Use:   "steer -m MODEL (--cvec FILE | --direction \"A|B\") [--scale S | --scale FROM:TO:STEP] \"PROMPT\"",
		Short: "Generate with and without a control vector and show how the next-token distribution shifts",
		Long: `Load a llama.cpp control vector (from lldiff contrast --export-cvec, llama.cpp's
cvector-generator, or any other tool) and apply it as llama.cpp does:
direction.N × scale is added to the output of layer N (resid_post.N) at
every token. For each scale, greedy generation (-n tokens) and the
next-token distribution after the prompt are compared with scale 0 (no
vector): KL divergence, the top tokens before and after, and the tokens
that gain and lose the most probability. --answer scores given
continuations at every scale.

Scales: one value (4), a sweep FROM:TO:STEP (-4:4:1, both ends included:
negative scales steer toward B, scales beyond the measured ±1 extrapolate),
or a list (0,2,8).

--direction "A|B" steers along the difference of two concepts instead of a
file: resid_post(A) − resid_post(B) at each prompt's last token, at every
layer. With one layer (--layer-range 4:4) scale 1 moves B's residual there
onto A's: a sweep such as --scale 0:1.5:0.25 walks from B to A
(interpolation) and past it (extrapolation), printing each greedy
continuation.

--layer-range FROM:TO applies only directions FROM..TO (inclusive), as
llama.cpp's --control-vector-layer-range does; negative layers count from
the last (-3:-1).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Prompt = args[0]
			}
			if err := opts.Model.check(); err != nil {
				return err
			}
			opts.Model.warnLimits(io)
			if opts.Cvec == "" && opts.Direction == "" {
				return usageErr("no control vector: pass --cvec FILE.gguf or --direction \"A|B\"")
			}
			if opts.Cvec != "" && opts.Direction != "" {
				return usageErr("--cvec and --direction both give the vector: choose one")
			}
			if err := needPrompt(args, opts.PromptFile); err != nil {
				return err
			}
			var err error
			if opts.Scales, err = parseScales(scale); err != nil {
				return &UsageError{Err: err}
			}
			if opts.Layers, err = parseLayerRange(layerRange); err != nil {
				return &UsageError{Err: err}
			}
			if opts.N < 0 || opts.TopK < 1 {
				return usageErr("-n takes a number >= 0 and --top-k >= 1")
			}
			if runF != nil {
				return runF(opts)
			}
			return steerRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Cvec, "cvec", "", "control vector GGUF file (general.architecture = controlvector)")
	f.StringVar(&opts.Direction, "direction", "", "steer along concept A − B: \"A|B\", measured at resid_post of every layer (with --layer-range L:L and --scale 0:1.5:0.25, walk from B toward A and beyond)")
	f.StringVar(&scale, "scale", "1", "scale: S, a sweep FROM:TO:STEP, or a list S1,S2,...")
	f.IntVarP(&opts.N, "n-predict", "n", 32, "tokens to generate (greedy)")
	f.StringVar(&layerRange, "layer-range", "", "apply only directions FROM:TO (inclusive), like llama.cpp's --control-vector-layer-range")
	f.IntVar(&opts.TopK, "top-k", 5, "tokens shown per distribution")
	f.StringArrayVar(&opts.Answers, "answer", nil, "score a continuation at every scale, e.g. --answer \" she\" (repeatable)")
	f.BoolVar(&opts.IgnoreEOS, "ignore-eos", false, "keep generating after an end-of-generation token")
	promptFileFlag(cmd, &opts.PromptFile)
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/contrast.md)")
	return cmd
}

// parseScales parses "4", "-4:4:1" (both ends included) or "0,2,8".
func parseScales(s string) ([]float64, error) {
	s = strings.TrimSpace(s)
	if parts := strings.Split(s, ":"); len(parts) == 3 {
		var v [3]float64
		for i, p := range parts {
			x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("--scale %q: %q is not a number; a sweep is FROM:TO:STEP such as -4:4:1", s, p)
			}
			v[i] = x
		}
		from, to, step := v[0], v[1], v[2]
		if step <= 0 {
			return nil, fmt.Errorf("--scale %q: the step must be positive", s)
		}
		if to < from {
			return nil, fmt.Errorf("--scale %q: FROM must not exceed TO", s)
		}
		// count in floating point first: a tiny step would overflow int
		nf := math.Floor((to-from)/step+1e-9) + 1
		if nf > 1000 || math.IsNaN(nf) {
			return nil, fmt.Errorf("--scale %q: %.4g scales; at most 1000: use a larger step", s, nf)
		}
		n := int(nf)
		out := make([]float64, n)
		for i := range out {
			// multiply, not accumulate: -4 + 8·0.1 is closer to -3.2
			out[i] = math.Round((from+float64(i)*step)*1e9) / 1e9
		}
		return out, nil
	}
	var out []float64
	for _, p := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("--scale %q: use a number (4), a sweep FROM:TO:STEP (-4:4:1) or a list (0,2,8)", s)
		}
		out = append(out, x)
	}
	return out, nil
}

// parseLayerRange parses --layer-range: FROM:TO (inclusive), or every
// layer when empty.
func parseLayerRange(s string) (diff.Layers, error) {
	l, err := diff.ParseLayers("--layer-range", s)
	if err != nil {
		return l, err
	}
	if !l.All() && !l.IsRange() {
		return l, fmt.Errorf("--layer-range %q: use FROM:TO, two layers with FROM <= TO, such as 2:5", s)
	}
	return l, nil
}

// SteerJSON is the document `steer --json` prints.
type SteerJSON = analysis.SteerResult

func steerRun(opts *SteerOptions) error {
	prompt, err := readOnePrompt(opts.Prompt, opts.PromptFile)
	if err != nil {
		return err
	}
	var cv *contrast.ControlVector
	file := opts.Cvec
	if opts.Cvec != "" {
		if cv, err = contrast.ReadControlVector(opts.Cvec); err != nil {
			return err
		}
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	if opts.Direction != "" {
		a, b, ok, err := analysis.SplitPair(opts.Direction)
		if err != nil {
			return flagAdvice(err)
		}
		if !ok || strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
			return usageErr("--direction %q: give two concepts as \"A|B\", such as \"happy|sad\"", opts.Direction)
		}
		if cv, err = analysis.ConceptDirection(opts.Model.engine(m), a, b, opts.Model.tokenizeOptions()); err != nil {
			return flagAdvice(err)
		}
		file = "direction " + opts.Direction
	}
	doc, err := analysis.Steer(opts.Model.engine(m), analysis.SteerOptions{
		Model: opts.Model.Model, Prompt: prompt, Tokenize: opts.Model.tokenizeOptions(),
		Vector: cv, VectorFile: file, Scales: opts.Scales, Layers: opts.Layers,
		N: opts.N, TopK: opts.TopK, Answers: opts.Answers, IgnoreEOS: opts.IgnoreEOS,
	})
	if err != nil {
		return flagAdvice(err)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	return printSteer(opts, doc, doc.Baseline)
}

func printSteer(opts *SteerOptions, doc *SteerJSON, base analysis.SteerStep) error {
	out := opts.IO.Out
	cv := doc.Cvec
	// the lldiff.* strings are the file's: escaped, as every string from
	// a file
	meta := func(k string) string { return safetext.Terminal(cv.Meta[k]) }
	fmt.Fprintf(out, "control vector %s: directions at layers %s", safetext.Terminal(filepath.Base(cv.File)), intRanges(cv.Layers))
	if cv.Meta["method"] != "" {
		fmt.Fprintf(out, " (%s, %s", meta("method"), meta("norm"))
		if cv.Meta["a"] != "" {
			fmt.Fprintf(out, "; A %s, B %s", meta("a"), meta("b"))
		}
		fmt.Fprint(out, ")")
	}
	fmt.Fprintf(out, "\nprompt %q → %d tokens\n", doc.Prompt, len(doc.Tokens))
	for _, w := range doc.Warnings {
		fmt.Fprintln(out, "note:", w)
	}
	if len(doc.Scales) == 1 {
		st := doc.Scales[0]
		fmt.Fprintf(out, "\n== greedy generation, %d tokens ==\n", doc.N)
		baseLabel, label := "scale 0 (no vector):", fmt.Sprintf("scale %g:", st.Scale)
		fmt.Fprintf(out, "%s %q\n", baseLabel, base.Text)
		fmt.Fprintf(out, "%-*s %q\n", len(baseLabel), label, st.Text)
		fmt.Fprintf(out, "\n== next-token distribution after the prompt: scale 0 → %g (KL %.4g nats) ==\n", st.Scale, st.KL)
		var rows [][]string
		for i := range opts.TopK {
			r := []string{fmt.Sprint(i + 1), "", ""}
			if i < len(base.Top) {
				r[1] = fmt.Sprintf("%s %.3f", base.Top[i].Piece, base.Top[i].Prob)
			}
			if i < len(st.Top) {
				r[2] = fmt.Sprintf("%s %.3f", st.Top[i].Piece, st.Top[i].Prob)
			}
			rows = append(rows, r)
		}
		if err := table(opts.IO, []string{"#", "scale 0", fmt.Sprintf("scale %g", st.Scale)}, rows); err != nil {
			return err
		}
		if st.Scale != 0 {
			rows = nil
			for i := range max(len(st.Gains), len(st.Losses)) {
				r := []string{"", ""}
				if i < len(st.Gains) {
					g := st.Gains[i]
					r[0] = fmt.Sprintf("%s %.3f→%.3f (%+.3f)", g.Piece, g.Base, g.Prob, g.Delta)
				}
				if i < len(st.Losses) {
					l := st.Losses[i]
					r[1] = fmt.Sprintf("%s %.3f→%.3f (%+.3f)", l.Piece, l.Base, l.Prob, l.Delta)
				}
				rows = append(rows, r)
			}
			fmt.Fprintln(out)
			if err := table(opts.IO, []string{"gains most", "loses most"}, rows); err != nil {
				return err
			}
		}
		if len(st.Answers) > 0 {
			rows = nil
			for i, a := range st.Answers {
				rows = append(rows, []string{fmt.Sprintf("%q", a.Text), fmt.Sprintf("%.4f", base.Answers[i].Prob), fmt.Sprintf("%.4f", a.Prob),
					fmt.Sprintf("%+.3f", a.LogProb-base.Answers[i].LogProb)})
			}
			fmt.Fprintln(out)
			return table(opts.IO, []string{"answer", "P scale 0", fmt.Sprintf("P scale %g", st.Scale), "Δ log P"}, rows)
		}
		return nil
	}
	fmt.Fprintf(out, "\n== sweep: %d scales ==\n", len(doc.Scales))
	header := []string{"scale", "KL", "top-1"}
	for _, a := range opts.Answers {
		header = append(header, fmt.Sprintf("P(%q)", a))
	}
	header = append(header, "continuation")
	var rows [][]string
	for _, st := range doc.Scales {
		r := []string{fmt.Sprintf("%g", st.Scale), fmt.Sprintf("%.4f", st.KL), ""}
		if len(st.Top) > 0 {
			r[2] = fmt.Sprintf("%s %.3f", st.Top[0].Piece, st.Top[0].Prob)
		}
		for _, a := range st.Answers {
			r = append(r, fmt.Sprintf("%.4f", a.Prob))
		}
		r = append(r, fmt.Sprintf("%q", clip(st.Text, 60)))
		rows = append(rows, r)
	}
	return table(opts.IO, header, rows)
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// intRanges writes sorted integers as ranges: 1-4,7.
func intRanges(xs []int) string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	var parts []string
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", xs[i], xs[j]))
		} else {
			parts = append(parts, fmt.Sprint(xs[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
