package cli

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// ContrastOptions are the options of `lldiff contrast`.
type ContrastOptions struct {
	IO      *IOStreams
	Model   modelFlags
	Vision  visionFlags
	AFile   string
	BFile   string
	Pairs   string
	Paired  bool
	Escapes bool
	// Pos is --pos as given (the result quotes it), Positions the parsed
	// --pos.
	Pos       string
	Positions analysis.RowSpec
	Kinds     string
	Parallel  int
	Top       int
	LensK     int
	// Lens is the parsed --lens-norm.
	Lens lens.Mode
	JSON bool

	SaveVectors string
	HTML        string // --html: also write the report page there
	Force       bool
	ExportCvec  string
	Method      string
	CvecNorm    string
	CvecOffset  int

	// Shard holds --shard, --shards, --shard-out and --from-stats
	// (cli/merge.go).
	Shard shardFlags

	// ModelB is --model-b: run every prompt through this second model
	// file and compare the models (cli/contrast_modelb.go).
	ModelB string
}

func newCmdContrast(io *IOStreams, runF func(*ContrastOptions) error) *cobra.Command {
	opts := &ContrastOptions{IO: io}
	var lensNorm string
	cmd := &cobra.Command{
		Use:   "contrast -m MODEL --a FILE --b FILE [--paired] | --pairs FILE.jsonl",
		Short: "Contrast two prompt sets: per-component separation, difference vectors, control vectors",
		Long: `Run every prompt of set A and set B (batched, several sequences per decode),
take each hook's activation at the chosen position, and report per layer and
component how A and B differ:

  ‖Δμ‖       norm of the mean difference Δμ = mean(A) − mean(B)
  spread     pooled standard deviation of the projections x·Δμ/‖Δμ‖
  sep        separation: Cohen's d of those projections, ‖Δμ‖ / spread
  held-out   leave-one-out accuracy of the mean-difference classifier
  sign       pairs only: fraction of pairs whose a−b points the way of Δμ
  PC1        first principal component (of the pair differences, or of A and
             B pooled), sign fixed so that A projects higher; its share of
             the variance and its cosine with Δμ

Components are ranked by separation, not by ‖Δμ‖, which grows with the
residual stream's norm. The logit lens of each layer's directions shows
which tokens they promote (A) and suppress (B).

Input: --a and --b hold one prompt per line (blank lines skipped; .jsonl
files one JSON string per line). They are unpaired sets unless --paired
pairs line i of A with line i of B. --pairs reads explicit pairs, one
{"a": "...", "b": "..."} object per line.

Positions (--pos): last (default: each prompt's last token), indices such as
-1 or 0,3 (negative from the end), or all: every position of pairs of equal
token length, from the first token where A and B differ (earlier positions
are identical in both and carry no difference).

Vectors: --save-vectors DIR writes each hook's mean difference and PC1 as
.npy with an index.json. --export-cvec FILE writes a llama.cpp control
vector from the resid_post directions (--method mean or pca): direction.N is
the vector measured at resid_post.N, so llama.cpp adds it where it was
measured. llama.cpp's cvector-generator writes the vector of layer N as
direction.N+1; --cvec-layer-offset 1 follows its convention (see
docs/contrast.md).

Sharded runs: --shard K/N --shard-out PART runs only shard K of N of the
prompts (K from 0; under a Slurm job array or a Kubernetes Indexed Job
K/N come from the scheduler) and writes its mergeable statistics to PART;
lldiff merge -o MERGED PART... joins them, and --from-stats MERGED prints
the report of the whole dataset without running the model (-m MODEL adds
the logit lens). See docs/cluster.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Shard.FromStats == "" || opts.Model.Model != "" {
				if err := opts.Model.check(); err != nil {
					return err
				}
			}
			opts.Model.warnLimits(io)
			if err := opts.Shard.check(opts); err != nil {
				return err
			}
			switch {
			case opts.Shard.FromStats != "":
			case opts.Pairs != "" && (opts.AFile != "" || opts.BFile != ""):
				return usageErr("give either --pairs FILE or --a FILE --b FILE, not both")
			case opts.Pairs == "" && opts.AFile == "":
				return usageErr("no prompts: pass --a FILE --b FILE (one prompt per line) or --pairs FILE.jsonl")
			case opts.Pairs == "" && opts.BFile == "" && !contrast.IsJSONL(opts.AFile):
				return usageErr("set B is missing: pass --b FILE")
			}
			if opts.Parallel < 1 || opts.Top < 1 || opts.LensK < 0 {
				return usageErr("--parallel and --top take numbers >= 1, --lens-k >= 0")
			}
			if opts.Parallel > llamacpp.MaxSeqs {
				return usageErr("--parallel %d: llama.cpp decodes at most %d sequences together", opts.Parallel, llamacpp.MaxSeqs)
			}
			var err error
			if opts.Lens, err = lens.ParseMode(lensNorm); err != nil {
				return &UsageError{Err: err}
			}
			if err := checkPosFlag(opts.Pos); err != nil {
				return err
			}
			if opts.Positions, err = analysis.ParseRowSpec(opts.Pos); err != nil {
				return &UsageError{Err: err}
			}
			switch opts.Method {
			case "mean", "pca":
			default:
				return usageErr("--method %q: use mean (the mean difference) or pca (the first principal component)", opts.Method)
			}
			switch opts.CvecNorm {
			case "unit", "raw":
			default:
				return usageErr("--cvec-norm %q: use unit (each direction of norm 1, as cvector-generator writes) or raw (the mean difference as measured)", opts.CvecNorm)
			}
			if opts.CvecNorm == "raw" && opts.Method == "pca" {
				return usageErr("--cvec-norm raw needs --method mean: a principal component has no magnitude of its own")
			}
			if opts.CvecOffset != 0 && opts.CvecOffset != 1 {
				return usageErr("--cvec-layer-offset %d: use 0 (lldiff: direction.N is measured at resid_post.N) or 1 (cvector-generator: direction.N+1)", opts.CvecOffset)
			}
			if runF != nil {
				return runF(opts)
			}
			return contrastRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	opts.Vision.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.AFile, "a", "", "prompts of set A, one per line (or .jsonl)")
	f.StringVar(&opts.BFile, "b", "", "prompts of set B, one per line (or .jsonl)")
	f.StringVar(&opts.Pairs, "pairs", "", `explicit pairs: a .jsonl file of {"a": ..., "b": ...} objects`)
	f.BoolVar(&opts.Paired, "paired", false, "pair line i of --a with line i of --b (the counts must match)")
	f.BoolVar(&opts.Escapes, "escapes", false, `process \n, \t, \\ and \xNN in text prompt files, as cvector-generator does`)
	f.StringVar(&opts.Pos, "pos", "last", "positions: last, indices such as -1 or 0,3, or all (pairs of equal token length)")
	f.StringVar(&opts.Kinds, "kinds", "resid_post,attn_out,mlp_out", "component kinds, at every layer")
	f.IntVarP(&opts.Parallel, "parallel", "P", 8, "sequences decoded together in one batch")
	f.IntVar(&opts.Top, "top", 10, "components in the ranking table")
	f.IntVar(&opts.LensK, "lens-k", 5, "tokens per logit-lens cell (0: no lens)")
	f.StringVar(&lensNorm, "lens-norm", "gamma", "logit lens of a direction v: gamma (W_U·γ⊙v, centred for a LayerNorm), norm (v through the model's final norm, RMSNorm or LayerNorm) or raw (W_U·v)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/contrast.md)")
	f.StringVar(&opts.SaveVectors, "save-vectors", "", "write each hook's mean difference and PC1 as .npy, with index.json, to DIR")
	f.BoolVar(&opts.Force, "force", false, "write into a non-empty --save-vectors directory or replace the --export-cvec or --html file")
	addHTMLFlag(f, &opts.HTML, nil)
	f.StringVar(&opts.ExportCvec, "export-cvec", "", "write a llama.cpp control vector (GGUF) from the resid_post directions")
	f.StringVar(&opts.Method, "method", "mean", "control-vector direction: mean (mean difference) or pca (first principal component)")
	f.StringVar(&opts.CvecNorm, "cvec-norm", "unit", "control-vector scale: unit (norm 1 per layer) or raw (the mean difference as measured)")
	f.IntVar(&opts.CvecOffset, "cvec-layer-offset", 0, "write the vector of resid_post.N as direction.N+OFFSET (1: cvector-generator's convention)")
	registerShardFlags(cmd, &opts.Shard)
	f.StringVar(&opts.ModelB, "model-b", "", "compare two models over the prompts of --a/--b or --pairs: a second GGUF file with the same tokenizer (docs/geometry.md)")
	return cmd
}

// ContrastJSON is the document `contrast --json` prints.
type ContrastJSON = analysis.ContrastResult

// readContrastDataset reads the prompt sets of --pairs or --a-file and
// --b-file, and names their sources.
func readContrastDataset(opts *ContrastOptions) (*contrast.Dataset, [2]string, error) {
	ro := contrast.ReadOptions{Escapes: opts.Escapes}
	var ds *contrast.Dataset
	var err error
	var source [2]string
	if opts.Pairs != "" {
		ds, err = contrast.ReadPairs(opts.Pairs)
		source = [2]string{opts.Pairs + " (a)", opts.Pairs + " (b)"}
	} else {
		ds, err = contrast.Load(opts.AFile, opts.BFile, opts.Paired, ro)
		source = [2]string{opts.AFile, opts.BFile}
		if opts.BFile == "" {
			source = [2]string{opts.AFile + " (a)", opts.AFile + " (b)"}
		}
	}
	if err != nil {
		return nil, source, &UsageError{Err: err}
	}
	return ds, source, nil
}

func contrastRun(opts *ContrastOptions) error {
	switch {
	case opts.HTML != "" && opts.ModelB != "":
		return usageErr("--html has no view of a --model-b contrast yet: leave out --html (--json has the whole result)")
	case opts.HTML != "" && opts.Shard.Out != "":
		return usageErr("--html draws the whole contrast: pass it to the run that merges the shards (--from-stats), not to a --shard-out run")
	}
	if opts.ModelB != "" {
		return contrastModelsRun(opts)
	}
	if opts.Shard.Out != "" {
		return contrastShardRun(opts)
	}
	if opts.ExportCvec != "" && opts.Shard.FromStats == "" && !strings.Contains(","+strings.ReplaceAll(opts.Kinds, " ", "")+",", ",resid_post,") {
		return usageErr("--export-cvec needs resid_post among --kinds: llama.cpp adds control vectors to the residual stream after each layer")
	}
	// output paths first: a mistake there must not cost the whole run;
	// the vectors are staged beside --save-vectors and locked from here on
	var outDir *outfile.Dir
	if opts.SaveVectors != "" {
		if err := checkOutDir(opts.SaveVectors, "--save-vectors", opts.Force); err != nil {
			return err
		}
		d, err := openOutDir(opts.SaveVectors, "--save-vectors", opts.Force)
		if err != nil {
			return err
		}
		defer d.Abort()
		outDir = d
	}
	if opts.ExportCvec != "" {
		if err := checkOutFile(opts.ExportCvec, "--export-cvec", opts.Force); err != nil {
			return err
		}
	}
	if opts.HTML != "" && opts.HTML == opts.ExportCvec {
		return usageErr("--html and --export-cvec are both %s: give them different files", opts.HTML)
	}
	if err := checkHTMLFlag(opts.HTML, opts.Force); err != nil {
		return err
	}
	var res *ContrastJSON
	var nLayer int
	var err error
	if opts.Shard.FromStats != "" {
		r, n, release, err := contrastFromStats(opts)
		if err != nil {
			return err
		}
		defer release()
		res, nLayer = r, n
		if opts.ExportCvec != "" && res.Stats[models.Hook{Kind: models.ResidPost, Layer: 0}] == nil {
			return usageErr("--export-cvec needs resid_post among the kinds of %s: llama.cpp adds control vectors to the residual stream after each layer", opts.Shard.FromStats)
		}
	} else {
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
		kinds, err := parseKinds(opts.Kinds, m)
		if err != nil {
			return err
		}
		ds, source, err := readContrastDataset(opts)
		if err != nil {
			return err
		}
		res, err = analysis.Contrast(opts.Model.engine(m), analysis.ContrastOptions{
			Model: opts.Model.Model, Dataset: ds, Sources: source, Positions: opts.Positions, Spec: opts.Pos,
			Tokenize: opts.Model.tokenizeOptions(), Kinds: kinds, Parallel: opts.Parallel, NCtx: opts.Model.NCtx,
			LensK: opts.LensK, Lens: opts.Lens, Progress: newProgress(opts.IO, "decoding %d/%d prompts", false),
		})
		if err != nil {
			return flagAdvice(err)
		}
		nLayer = m.NLayer()
	}
	// the control vector is made before anything is written: a refusal
	// leaves the outputs as they were
	var cv *contrast.ControlVector
	if opts.ExportCvec != "" {
		var ex *analysis.ContrastExport
		cv, ex, err = analysis.ControlVector(res, nLayer, analysis.CvecOptions{
			Method: opts.Method, Norm: opts.CvecNorm, Offset: opts.CvecOffset, ModelFile: filepath.Base(res.Model),
		})
		if err != nil {
			return flagAdvice(err)
		}
		ex.File = opts.ExportCvec
		res.Cvec = ex
	}
	if outDir != nil {
		idx, err := saveVectors(opts, res, outDir)
		if err != nil {
			return err
		}
		res.Vectors = idx
	}
	if cv != nil {
		if err := checkOutFile(opts.ExportCvec, "--export-cvec", opts.Force); err != nil {
			return err
		}
		// a GGUF writer's file: written under a temporary name, renamed
		// into place, removed on an interrupt
		if err := cv.WriteFile(opts.ExportCvec, opts.Force); err != nil {
			return err
		}
	}
	if outDir != nil {
		if err := outDir.Commit(); err != nil {
			return err
		}
	}
	if err := writeHTML(opts.HTML, report.KindContrast, res); err != nil {
		return err
	}
	if opts.JSON {
		err = writeJSON(opts.IO.Out, res)
	} else {
		err = printContrast(opts, nLayer, res)
	}
	if err == nil {
		noteHTML(opts.IO, opts.JSON, opts.HTML)
	}
	return err
}

// parseKinds parses --kinds: per-layer kinds without a layer.
func parseKinds(spec string, m *llamacpp.Model) ([]models.Kind, error) {
	var kinds []models.Kind
	for _, s := range strings.Split(spec, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		hs, err := models.ParseHook(s, m.NLayer())
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		if !hs[0].Kind.PerLayer() || len(hs) != m.NLayer() {
			return nil, usageErr("--kinds takes per-layer kinds without a layer (resid_post, resid_mid, resid_pre, attn_out, mlp_out, z), got %q", s)
		}
		if err := m.Hooks.Check(hs[0].Kind); err != nil {
			return nil, &UsageError{Err: err}
		}
		if !slices.Contains(kinds, hs[0].Kind) {
			kinds = append(kinds, hs[0].Kind)
		}
	}
	if len(kinds) == 0 {
		return nil, usageErr("--kinds is empty")
	}
	return kinds, nil
}

// saveVectors writes each hook's mean difference and PC1 as .npy, with an
// index.json that records each file's size, into the staging directory of
// out.
func saveVectors(opts *ContrastOptions, res *ContrastJSON, out *outfile.Dir) (*analysis.VectorIndex, error) {
	idx := &analysis.VectorIndex{
		Model: res.Model, Arch: res.Arch, A: res.A.Source, B: res.B.Source,
		Paired: res.Paired, Positions: res.Positions,
	}
	for _, h := range res.Hooks {
		st := res.Stats[h]
		for _, v := range []struct {
			method string
			vec    []float32
			norm   float64
		}{{"mean_diff", st.MeanDiff, st.Norm}, {"pc1", st.PC.Vec, diff.Norm(st.PC.Vec)}} {
			name := fmt.Sprintf("%s.%s.npy", h.Name(), v.method)
			size, err := writeStagedNpy(out, name, []int{len(v.vec)}, v.vec)
			if err != nil {
				return nil, err
			}
			idx.Files = append(idx.Files, analysis.VectorFile{
				File: name, Hook: h.Name(), Kind: string(h.Kind), Layer: h.Layer, Method: v.method,
				Shape: []int{len(v.vec)}, Bytes: size, Norm: v.norm, Separation: analysis.Finite(st.Separation),
			})
		}
	}
	if err := writeStagedJSON(out, idx); err != nil {
		return nil, err
	}
	idx.Dir = opts.SaveVectors
	return idx, nil
}

func printContrast(opts *ContrastOptions, nLayer int, doc *ContrastJSON) error {
	out := opts.IO.Out
	if doc.Summary != nil && doc.Summary.Text != "" {
		fmt.Fprintln(out, "\n== summary ==")
		for _, line := range wrapWords(safetext.Terminal(doc.Summary.Text), 92) {
			fmt.Fprintln(out, line)
		}
		fmt.Fprintln(out)
	}
	pairing := "unpaired"
	if doc.Paired {
		pairing = "paired"
	}
	pos := doc.Positions
	if pos == "" || pos == "last" {
		pos = "last token"
	}
	fmt.Fprintf(out, "A: %d prompts (%s), B: %d prompts (%s), %s; position: %s; %d rows per set",
		doc.A.Prompts, doc.A.Source, doc.B.Prompts, doc.B.Source, pairing, pos, doc.A.Rows)
	if doc.A.Rows != doc.B.Rows {
		fmt.Fprintf(out, " (A %d, B %d)", doc.A.Rows, doc.B.Rows)
	}
	fmt.Fprintf(out, "\ndecoded %d sequences (%d tokens) in %.2fs, %d per batch: %.1f prompts/s\n",
		doc.Throughput.Sequences, doc.Throughput.Tokens, doc.Throughput.Seconds, doc.Throughput.Parallel, doc.Throughput.PromptsPerSec)
	for _, w := range doc.Warnings {
		fmt.Fprintln(out, "note:", w)
	}
	f := func(p *float64, format string) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf(format, *p)
	}
	fmt.Fprintf(out, "\n== components ranked by separation (top %d of %d) ==\n", min(opts.Top, len(doc.Components)), len(doc.Components))
	header := []string{"#", "hook", "sep (d)", "held-out", "sign", "‖Δμ‖", "spread", "PC1 var", "cos(PC1,Δμ)"}
	var rows [][]string
	for _, c := range doc.Components[:min(opts.Top, len(doc.Components))] {
		sep := f(c.Separation, "%.3f")
		if st := doc.Stats[models.Hook{Kind: models.Kind(c.Kind), Layer: c.Layer}]; c.Separation == nil && st != nil && math.IsInf(st.Separation, 1) {
			sep = "∞"
		}
		rows = append(rows, []string{
			fmt.Sprint(c.Rank), c.Hook, sep, f(c.HeldOut, "%.3f"), f(c.SignConsistency, "%.3f"),
			fmt.Sprintf("%.4g", c.MeanDiffNorm), f(c.Spread, "%.4g"),
			fmt.Sprintf("%.1f%%", 100*c.PC1Explained), fmt.Sprintf("%.3f", c.PC1Cos),
		})
	}
	if err := table(opts.IO, header, rows); err != nil {
		return err
	}
	if err := printContrastLayers(opts.IO, doc); err != nil {
		return err
	}
	if opts.LensK > 0 {
		fmt.Fprintf(out, "\n== logit lens of the resid_post directions (%s; ↑ promoted toward A, ↓ toward B) ==\n", dirLensDesc(doc.LensNorm))
		join := func(ts []analysis.LensToken) string {
			var s []string
			for _, t := range ts {
				s = append(s, t.Piece)
			}
			return strings.Join(s, " ")
		}
		var rows [][]string
		byHook := map[string]*analysis.ContrastComp{}
		for i := range doc.Components {
			byHook[doc.Components[i].Hook] = &doc.Components[i]
		}
		for l := range nLayer {
			c := byHook[models.Hook{Kind: models.ResidPost, Layer: l}.Name()]
			if c == nil || c.Lens == nil {
				continue
			}
			rows = append(rows, []string{fmt.Sprint(l), join(c.Lens.MeanDiffTop), join(c.Lens.MeanDiffBottom), join(c.Lens.PC1Top), join(c.Lens.PC1Bottom)})
		}
		if len(rows) > 0 {
			if err := table(opts.IO, []string{"layer", "Δμ ↑ (A)", "Δμ ↓ (B)", "PC1 ↑ (A)", "PC1 ↓ (B)"}, rows); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(out, "(add resid_post to --kinds to see it)")
		}
	}
	if v := doc.Vectors; v != nil {
		fmt.Fprintf(out, "\nwrote %d vectors (mean difference and PC1 per hook) and index.json to %s\n", len(v.Files), v.Dir)
	}
	if ex := doc.Cvec; ex != nil {
		fmt.Fprintf(out, "\nwrote control vector %s (%s, %s, layer offset %d): %d directions\n", ex.File, ex.Method, ex.Norm, ex.LayerOffset, len(ex.Directions))
		for _, d := range ex.Directions {
			fmt.Fprintf(out, "  %s = %s at %s (norm %.4g)\n", d.Tensor, ex.Method, d.Hook, d.Norm)
		}
		for _, s := range ex.Skipped {
			fmt.Fprintln(out, "  skipped", s)
		}
		fmt.Fprintf(out, "steer with: lldiff steer -m %s --cvec %s --scale 4 \"PROMPT\"  (llama.cpp: --control-vector-scaled %s 4)\n", doc.Model, ex.File, ex.File)
	}
	return nil
}

func dirLensDesc(mode string) string {
	switch mode {
	case "raw":
		return "W_U·v"
	case "norm":
		return "W_U·γ⊙v/rms(v)"
	}
	return "W_U·γ⊙v"
}

// printContrastLayers prints one row per layer with each kind's separation
// and a bar for the best.
func printContrastLayers(io *IOStreams, res *ContrastJSON) error {
	fmt.Fprintln(io.Out, "\n== per layer: separation (Cohen's d along Δμ) ==")
	var kinds []models.Kind
	byLayer := map[int]map[models.Kind]float64{}
	maxSep := 0.0
	for _, h := range res.Hooks {
		if !slices.Contains(kinds, h.Kind) {
			kinds = append(kinds, h.Kind)
		}
		if byLayer[h.Layer] == nil {
			byLayer[h.Layer] = map[models.Kind]float64{}
		}
		s := res.Stats[h].Separation
		byLayer[h.Layer][h.Kind] = s
		if !math.IsNaN(s) && !math.IsInf(s, 0) {
			maxSep = math.Max(maxSep, s)
		}
	}
	header := []string{"layer"}
	for _, k := range kinds {
		header = append(header, string(k))
	}
	header = append(header, "largest")
	var layers []int
	for l := range byLayer {
		layers = append(layers, l)
	}
	slices.Sort(layers)
	var rows [][]string
	for _, l := range layers {
		row := []string{fmt.Sprint(l)}
		best, bestV := models.Kind(""), math.Inf(-1)
		for _, k := range kinds {
			v := byLayer[l][k]
			switch {
			case math.IsNaN(v):
				row = append(row, "–")
			case math.IsInf(v, 1):
				row = append(row, "∞")
			default:
				row = append(row, fmt.Sprintf("%.3f", v))
			}
			if !math.IsNaN(v) && v > bestV {
				best, bestV = k, v
			}
		}
		row = append(row, fmt.Sprintf("%-10s %s", best, bar(math.Min(bestV, maxSep), maxSep, 20)))
		rows = append(rows, row)
	}
	return table(io, header, rows)
}
