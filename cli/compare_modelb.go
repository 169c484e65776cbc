package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// `compare -m A.gguf --model-b B.gguf "prompt"`: one prompt, two models
// (analysis.CompareModels). The document is analysis.ModelBResult
// (docs/geometry.md).

// ModelBJSON is the document `compare --model-b --json` prints.
type ModelBJSON = analysis.ModelBResult

func compareModelsRun(opts *CompareOptions) error {
	switch {
	case opts.B != "" || opts.BFile != "":
		return usageErr("with --model-b compare runs one prompt through two models: give prompt A only (the second prompt %q has no place)", opts.B)
	case opts.HTML != "":
		return usageErr("--html does not show a --model-b comparison yet: use --json")
	case opts.ImageA != "" || opts.ImageB != "":
		return usageErr("--image-a and --image-b do not go with --model-b")
	case opts.Answers != nil:
		return usageErr("--answer does not go with --model-b yet: the predictions of both models are shown")
	}
	prompt, err := readPrompt(opts.A, opts.AFile, "the prompt")
	if err != nil {
		return err
	}
	if prompt == "" {
		return usageErr("compare --model-b needs a prompt: lldiff compare -m A.gguf --model-b B.gguf \"prompt\"")
	}
	ma, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer ma.Close()
	fb := opts.Model
	fb.Model = opts.ModelB
	mb, err := fb.load(false)
	if err != nil {
		return fmt.Errorf("--model-b: %w", err)
	}
	defer mb.Close()
	// the default --kinds drops what either architecture lacks (Pythia has
	// no resid_mid); kinds given with --kinds must exist in both
	var kinds []models.Kind
	for _, s := range strings.Split(opts.Kinds, ",") {
		hs, err := models.ParseHook(strings.TrimSpace(s), ma.NLayer())
		if err != nil {
			return &UsageError{Err: err}
		}
		if !hs[0].Kind.PerLayer() || len(hs) != ma.NLayer() {
			return usageErr("--kinds takes per-layer kinds without a layer (resid_post, resid_mid, attn_out, mlp_out, resid_pre), got %q", s)
		}
		for _, m := range []*llamacpp.Model{ma, mb} {
			if err = m.Hooks.Check(hs[0].Kind); err != nil {
				break
			}
		}
		if err != nil {
			if opts.kindsSet {
				return &UsageError{Err: err}
			}
			continue
		}
		kinds = append(kinds, hs[0].Kind)
	}
	var lmap []int
	if opts.LayerMap != "" {
		lmap = make([]int, ma.NLayer())
		for i := range lmap {
			lmap[i] = -1
		}
		for _, part := range strings.Split(opts.LayerMap, ",") {
			x, y, ok := strings.Cut(strings.TrimSpace(part), ":")
			la, errA := strconv.Atoi(strings.TrimSpace(x))
			lb, errB := strconv.Atoi(strings.TrimSpace(y))
			if !ok || errA != nil || errB != nil || la < 0 || la >= len(lmap) {
				return usageErr("--layer-map %q: give A:B pairs of layers, such as 0:0,1:2, with A in 0..%d", opts.LayerMap, len(lmap)-1)
			}
			lmap[la] = lb
		}
		for l, m := range lmap {
			if m < 0 {
				return usageErr("--layer-map %q does not map layer %d of A: map every layer", opts.LayerMap, l)
			}
		}
	}
	doc, err := analysis.CompareModels(opts.Model.engine(ma), fb.engine(mb), analysis.ModelBOptions{
		ModelA: opts.Model.Model, ModelB: opts.ModelB, Prompt: prompt, Tokenize: opts.Model.tokenizeOptions(),
		Positions: opts.Pos, Kinds: kinds, Sort: opts.Sort, TopK: opts.TopK, LensK: opts.LensK, Lens: opts.Lens,
		LayerMap: lmap,
	})
	if err != nil {
		return flagAdvice(err)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	return printModelB(opts, doc)
}

func printModelB(opts *CompareOptions, doc *ModelBJSON) error {
	out := opts.IO.Out
	fmt.Fprintf(out, "A: %s\nB: %s\nprompt %q → %d tokens\n", safetext.Terminal(doc.ModelA), safetext.Terminal(doc.ModelB), doc.Prompt, len(doc.Tokens))
	for _, w := range doc.Warnings {
		fmt.Fprintln(out, "note:", safetext.Terminal(w))
	}
	if !opts.NoPredictions {
		fmt.Fprintf(out, "\n== next token after position %d: KL(A‖B) %.4g nats, KL(B‖A) %.4g ==\n", doc.Pos[len(doc.Pos)-1], doc.KLAB, doc.KLBA)
		var rows [][]string
		for i := range max(len(doc.TopA), len(doc.TopB)) {
			r := []string{fmt.Sprint(i + 1), "", ""}
			if i < len(doc.TopA) {
				t := doc.TopA[i]
				r[1] = fmt.Sprintf("%s  %.3f (%.2f)", t.Piece, t.Prob, t.Logit)
			}
			if i < len(doc.TopB) {
				t := doc.TopB[i]
				r[2] = fmt.Sprintf("%s  %.3f (%.2f)", t.Piece, t.Prob, t.Logit)
			}
			rows = append(rows, r)
		}
		if err := table(opts.IO, []string{"#", "A: piece prob (logit)", "B: piece prob (logit)"}, rows); err != nil {
			return err
		}
	}
	if !opts.NoRanking && doc.Components != nil {
		fmt.Fprintf(out, "\n== components where the models differ, by %s (top %d of %d) ==\n", sortName(opts.Sort), min(opts.Top, len(doc.Components)), len(doc.Components))
		var rows [][]string
		for i, c := range doc.Components[:min(opts.Top, len(doc.Components))] {
			rows = append(rows, []string{fmt.Sprint(i + 1), c.Short, fmt.Sprintf("%.4g", c.L2), fmt.Sprintf("%.4g", c.RelL2), fmt.Sprintf("%.6f", c.Cosine)})
		}
		if err := table(opts.IO, []string{"#", "hook", "‖A−B‖", "rel", "cos(A,B)"}, rows); err != nil {
			return err
		}
	}
	if !opts.NoLayers && doc.Layers != nil {
		fmt.Fprintln(out, "\n== per layer: ‖A−B‖ / mean(‖A‖,‖B‖) ==")
		if err := printLayers(opts.IO, doc.Layers); err != nil {
			return err
		}
	}
	if !opts.NoLens {
		fmt.Fprintf(out, "\n== logit lens of resid_post, each model's own (%s) ==\n", opts.Lens)
		join := func(ts []analysis.LensToken) string {
			var s []string
			for _, t := range ts {
				s = append(s, t.Piece)
			}
			return strings.Join(s, " ")
		}
		var rows [][]string
		for _, l := range doc.Lens {
			rows = append(rows, []string{fmt.Sprint(l.Layer), fmt.Sprint(l.LayerB), join(l.A), join(l.B)})
		}
		if err := table(opts.IO, []string{"layer A", "layer B", "A", "B"}, rows); err != nil {
			return err
		}
	}
	return nil
}
