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
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/llamacpp"
)

func init() {
	extraCommands = append(extraCommands, func(io *IOStreams) *cobra.Command { return newCmdSteer(io, nil) })
}

// SteerOptions are the options of `lldiff steer`.
type SteerOptions struct {
	IO         *IOStreams
	Model      modelFlags
	Prompt     string
	PromptFile string
	Cvec       string
	Scale      string
	N          int
	LayerRange string
	TopK       int
	Answers    []string
	IgnoreEOS  bool
	JSON       bool
}

func newCmdSteer(io *IOStreams, runF func(*SteerOptions) error) *cobra.Command {
	opts := &SteerOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "steer -m MODEL --cvec FILE [--scale S | --scale FROM:TO:STEP] \"PROMPT\"",
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

--layer-range FROM:TO applies only directions FROM..TO (inclusive), as
llama.cpp's --control-vector-layer-range does.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Prompt = args[0]
			}
			if err := opts.Model.check(); err != nil {
				return err
			}
			if opts.Cvec == "" {
				return usageErr("no control vector: pass --cvec FILE.gguf")
			}
			if err := needPrompt(args, opts.PromptFile); err != nil {
				return err
			}
			if _, err := parseScales(opts.Scale); err != nil {
				return &UsageError{Err: err}
			}
			if _, _, err := parseLayerRange(opts.LayerRange); err != nil {
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
	f.StringVar(&opts.Scale, "scale", "1", "scale: S, a sweep FROM:TO:STEP, or a list S1,S2,...")
	f.IntVarP(&opts.N, "n-predict", "n", 32, "tokens to generate (greedy)")
	f.StringVar(&opts.LayerRange, "layer-range", "", "apply only directions FROM:TO (inclusive), like llama.cpp's --control-vector-layer-range")
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

// parseLayerRange parses "FROM:TO" (inclusive); "" is every layer.
func parseLayerRange(s string) (from, to int, err error) {
	if strings.TrimSpace(s) == "" {
		return 0, math.MaxInt32, nil
	}
	a, b, ok := strings.Cut(s, ":")
	from, err1 := strconv.Atoi(strings.TrimSpace(a))
	to, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || from < 0 || to < from {
		return 0, 0, fmt.Errorf("--layer-range %q: use FROM:TO, two layers with FROM <= TO, such as 2:5", s)
	}
	return from, to, nil
}

// SteerJSON is the document `steer --json` prints.
type SteerJSON struct {
	Model    string           `json:"model"`
	Cvec     steerCvecJSON    `json:"control_vector"`
	Prompt   string           `json:"prompt"`
	Tokens   []analysis.Token `json:"tokens"`
	N        int              `json:"n_predict"`
	Warnings []string         `json:"warnings"`
	// Baseline is scale 0: no vector.
	Baseline steerStepJSON   `json:"baseline"`
	Scales   []steerStepJSON `json:"scales"`
}

type steerCvecJSON struct {
	File      string `json:"file"`
	ModelHint string `json:"model_hint"`
	// Layers are the layers whose direction is applied.
	Layers []int `json:"layers"`
	// Offset is the file's lldiff.layer_offset (-1 when it does not say).
	Offset int               `json:"layer_offset"`
	Meta   map[string]string `json:"meta,omitempty"`
}

type steerStepJSON struct {
	Scale  float64          `json:"scale"`
	Text   string           `json:"text"`
	Tokens []analysis.Token `json:"generated"`
	// KL is KL(steered ‖ scale 0) of the next-token distributions after
	// the prompt, in nats.
	KL      float64              `json:"kl"`
	Top     []analysis.PredToken `json:"top"`
	Gains   []shiftTokenJSON     `json:"gains"`
	Losses  []shiftTokenJSON     `json:"losses"`
	Answers []steerAnsJSON       `json:"answers,omitempty"`
}

type shiftTokenJSON struct {
	ID    int32   `json:"id"`
	Piece string  `json:"piece"`
	Base  float64 `json:"base_prob"`
	Prob  float64 `json:"prob"`
	Delta float64 `json:"delta"`
}

type steerAnsJSON struct {
	Text    string  `json:"text"`
	LogProb float64 `json:"logprob"`
	Prob    float64 `json:"prob"`
}

func steerRun(opts *SteerOptions) error {
	prompt, err := readOnePrompt(opts.Prompt, opts.PromptFile)
	if err != nil {
		return err
	}
	scales, _ := parseScales(opts.Scale)
	from, to, _ := parseLayerRange(opts.LayerRange)
	cv, err := contrast.ReadControlVector(opts.Cvec)
	if err != nil {
		return err
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	doc := SteerJSON{Model: opts.Model.Model, Prompt: prompt, N: opts.N, Warnings: []string{}}
	if cv.NEmbd() != m.NEmbd() {
		return fmt.Errorf("%s has directions of %d values but %s has d_model %d: the control vector was made for another model", opts.Cvec, cv.NEmbd(), m.Path, m.NEmbd())
	}
	if cv.ModelHint != "" && cv.ModelHint != m.Arch() {
		doc.Warnings = append(doc.Warnings, fmt.Sprintf("the control vector's model_hint is %q, the model is %q", cv.ModelHint, m.Arch()))
	}
	if cv.Offset > 0 {
		doc.Warnings = append(doc.Warnings, fmt.Sprintf("the file follows cvector-generator's layer convention (offset %d): direction.N was measured at resid_post.%s and is added, as llama.cpp adds it, at layer N", cv.Offset, "N−"+strconv.Itoa(cv.Offset)))
	}
	unit, dropped := cv.PerLayer(m.NLayer(), 1, from, to)
	if len(dropped) > 0 {
		doc.Warnings = append(doc.Warnings, fmt.Sprintf("directions for layers %v are ignored: the model has layers 0..%d (llama.cpp ignores them too)", dropped, m.NLayer()-1))
	}
	var applied []int
	for l, v := range unit {
		if v != nil {
			applied = append(applied, l)
		}
	}
	if len(applied) == 0 {
		return usageErr("no direction of %s falls in the layer range %s of this %d-layer model", opts.Cvec, opts.LayerRange, m.NLayer())
	}
	if !slices.ContainsFunc(applied, func(l int) bool { return contrast.Norm(unit[l]) > 0 }) {
		doc.Warnings = append(doc.Warnings, fmt.Sprintf("every applied direction of %s is zero: steering with it changes nothing", opts.Cvec))
	}
	doc.Cvec = steerCvecJSON{File: opts.Cvec, ModelHint: cv.ModelHint, Layers: applied, Offset: cv.Offset, Meta: cv.Meta}
	tokenized, err := tokenizePrompts(m, opts.Model.tokenizeOptions(), prompt)
	if err != nil {
		return err
	}
	ids := tokenized[0]
	doc.Tokens = analysis.Tokens(m, ids)

	// answers: prompt + answer tokens, scored in one extra decode per scale
	type answer struct {
		text string
		seq  []int32
	}
	var answers []answer
	for _, a := range opts.Answers {
		tail, _, err := analysis.AnswerTokens(m, prompt, ids, a, opts.Model.tokenizeOptions())
		if err != nil {
			return err
		}
		answers = append(answers, answer{a, slices.Concat(ids, tail)})
	}
	seqs := [][]int32{slices.Concat(ids, make([]int32, opts.N))}
	for _, a := range answers {
		seqs = append(seqs, a.seq)
	}
	ctx, err := opts.Model.context(m, seqs, max(1, len(answers)))
	if err != nil {
		return fmt.Errorf("the prompt (%d tokens) and -n %d generated tokens (counted together here) do not fit: %w; or lower -n", len(ids), opts.N, err)
	}
	defer ctx.Close()
	// The vector is on from the first decode (zeros for scale 0): llama.cpp
	// then keeps the same graph and reads each new scale's values.
	if err := ctx.SetControlVector(make([][]float32, m.NLayer())); err != nil {
		return err
	}
	run := func(scale float64) (*llamacpp.Generation, []steerAnsJSON, error) {
		dirs := make([][]float32, len(unit))
		for l, v := range unit {
			if v == nil || scale == 0 {
				continue
			}
			dirs[l] = make([]float32, len(v))
			for i, x := range v {
				dirs[l][i] = float32(float64(x) * scale)
			}
		}
		if err := ctx.SetControlVector(dirs); err != nil {
			return nil, nil, err
		}
		g, err := ctx.Generate(ids, llamacpp.GenerateOptions{N: opts.N, StopAtEOG: !opts.IgnoreEOS})
		if err != nil {
			return nil, nil, err
		}
		if degenerate(g.First) {
			return nil, nil, fmt.Errorf("at --scale %g the model's output breaks down (its logits are all equal, NaN or infinite): the vector times the scale overflows float32 inside the model; use a smaller scale", scale)
		}
		var scores []steerAnsJSON
		if len(answers) > 0 {
			var aseqs [][]int32
			for _, a := range answers {
				aseqs = append(aseqs, a.seq)
			}
			caches, err := ctx.Run(aseqs, llamacpp.RunOptions{})
			if err != nil {
				return nil, nil, err
			}
			for i, a := range answers {
				_, lp := analysis.ScoreAnswer(m, caches[i], len(ids))
				scores = append(scores, steerAnsJSON{Text: a.text, LogProb: lp, Prob: math.Exp(lp)})
			}
		}
		return g, scores, nil
	}
	base, baseAns, err := run(0)
	if err != nil {
		return err
	}
	baseProbs := lens.Softmax(nil, base.First)
	doc.Baseline = steerStep(m, 0, base, baseAns, baseProbs, opts.TopK)
	for _, s := range scales {
		g, ans := base, baseAns
		if s != 0 {
			if g, ans, err = run(s); err != nil {
				return err
			}
		}
		doc.Scales = append(doc.Scales, steerStep(m, s, g, ans, baseProbs, opts.TopK))
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	return printSteer(opts, &doc, doc.Baseline)
}

func steerStep(m *llamacpp.Model, scale float64, g *llamacpp.Generation, ans []steerAnsJSON, base []float32, k int) steerStepJSON {
	probs := lens.Softmax(nil, g.First)
	st := steerStepJSON{Scale: scale, Tokens: analysis.Tokens(m, g.Tokens), Answers: ans}
	var text strings.Builder
	for _, id := range g.Tokens {
		text.Write(m.Piece(id))
	}
	st.Text = text.String()
	for _, t := range lens.TopK(g.First, k) {
		st.Top = append(st.Top, analysis.PredToken{ID: t.ID, Piece: m.Printable(t.ID), Prob: float64(probs[t.ID]), Logit: t.Value})
	}
	delta := make([]float32, len(probs))
	for i := range probs {
		p, q := float64(probs[i]), float64(base[i])
		delta[i] = float32(p - q)
		if p > 0 && q > 0 {
			st.KL += p * math.Log(p/q)
		}
	}
	shift := func(ts []lens.Token) []shiftTokenJSON {
		var out []shiftTokenJSON
		for _, t := range ts {
			out = append(out, shiftTokenJSON{ID: t.ID, Piece: m.Printable(t.ID), Base: float64(base[t.ID]), Prob: float64(probs[t.ID]), Delta: t.Value})
		}
		return out
	}
	st.Gains, st.Losses = shift(lens.TopK(delta, k)), shift(lens.BottomK(delta, k))
	if scale == 0 {
		st.Gains, st.Losses = nil, nil
	}
	return st
}

func printSteer(opts *SteerOptions, doc *SteerJSON, base steerStepJSON) error {
	out := opts.IO.Out
	cv := doc.Cvec
	fmt.Fprintf(out, "control vector %s: directions at layers %s", filepath.Base(cv.File), intRanges(cv.Layers))
	if cv.Meta["method"] != "" {
		fmt.Fprintf(out, " (%s, %s", cv.Meta["method"], cv.Meta["norm"])
		if cv.Meta["a"] != "" {
			fmt.Fprintf(out, "; A %s, B %s", cv.Meta["a"], cv.Meta["b"])
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

// degenerate reports whether logits carry no prediction: a NaN or an
// infinity, or every logit equal (a residual that overflowed float32 is
// normalised to zeros).
func degenerate(logits []float32) bool {
	if len(logits) == 0 {
		return false
	}
	lo, hi := logits[0], logits[0]
	for _, x := range logits {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return true
		}
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo == hi
}
