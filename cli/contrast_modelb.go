package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// `contrast -m A.gguf --model-b B.gguf --a FILE`: every prompt of the
// dataset (set A, then set B) through two models
// (analysis.ContrastModels; docs/geometry.md).

// ModelBContrastJSON is the document `contrast --model-b --json` prints.
type ModelBContrastJSON = analysis.ModelBContrastResult

func contrastModelsRun(opts *ContrastOptions) error {
	switch {
	case opts.SaveVectors != "" || opts.ExportCvec != "" || opts.HTML != "":
		return usageErr("--save-vectors, --export-cvec and --html do not go with --model-b: it compares two models, not two prompt sets (use --json)")
	case opts.Shard.Out != "" || opts.Shard.FromStats != "":
		return usageErr("--model-b does not run in shards")
	}
	ds, source, err := readContrastDataset(opts)
	if err != nil {
		return err
	}
	var prompts, sources []string
	for k, set := range [][]contrast.Prompt{ds.A, ds.B} {
		for i, p := range set {
			prompts = append(prompts, p.Text)
			src := p.Source
			if src == "" {
				src = fmt.Sprintf("%s:%d", source[k], i+1)
			}
			sources = append(sources, src)
		}
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
			if err := m.Hooks.Check(hs[0].Kind); err != nil {
				return &UsageError{Err: err}
			}
		}
		if !slices.Contains(kinds, hs[0].Kind) {
			kinds = append(kinds, hs[0].Kind)
		}
	}
	doc, err := analysis.ContrastModels(opts.Model.engine(ma), fb.engine(mb), analysis.ModelBContrastOptions{
		ModelA: opts.Model.Model, ModelB: opts.ModelB, Prompts: prompts, Sources: sources,
		Tokenize: opts.Model.tokenizeOptions(), Pos: opts.Positions, Kinds: kinds, Parallel: opts.Parallel,
	})
	if err != nil {
		return flagAdvice(err)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	out := opts.IO.Out
	fmt.Fprintf(out, "A: %s\nB: %s\n%d prompts; next token: mean KL(A‖B) %.4g nats, top token agrees in %.0f%%\n",
		safetext.Terminal(doc.ModelA), safetext.Terminal(doc.ModelB), len(doc.Prompts), doc.MeanKL, 100*doc.TopAgree)
	fmt.Fprintf(out, "\n== components by mean ‖A−B‖ / mean(‖A‖,‖B‖) over the prompts (top %d of %d) ==\n", min(opts.Top, len(doc.Components)), len(doc.Components))
	var rows [][]string
	for i, c := range doc.Components[:min(opts.Top, len(doc.Components))] {
		rows = append(rows, []string{fmt.Sprint(i + 1), c.Short, fmt.Sprintf("%.4g", c.MeanRel), fmt.Sprintf("%.4g", c.SDRel), fmt.Sprintf("%.4g", c.MaxRel), fmt.Sprintf("%.6f", c.MeanCos)})
	}
	if err := table(opts.IO, []string{"#", "hook", "mean rel", "sd", "max", "mean cos"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(out, "\n== next-token KL per prompt, largest first ==")
	ps := slices.Clone(doc.Prompts)
	slices.SortStableFunc(ps, func(x, y analysis.ModelBPrompt) int {
		switch {
		case x.KLAB > y.KLAB:
			return -1
		case x.KLAB < y.KLAB:
			return 1
		}
		return 0
	})
	rows = nil
	for _, p := range ps[:min(opts.Top, len(ps))] {
		agree := ""
		if p.TopA != p.TopB {
			agree = "≠"
		}
		rows = append(rows, []string{safetext.Terminal(p.Source), fmt.Sprintf("%.4g", p.KLAB), fmt.Sprintf("%.4g", p.KLBA), agree})
	}
	return table(opts.IO, []string{"prompt", "KL(A‖B)", "KL(B‖A)", "top ≠"}, rows)
}
