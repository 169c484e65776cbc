package cli

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

func init() {
	extraCommands = append(extraCommands, func(io *IOStreams) *cobra.Command { return newCmdContrast(io, nil) })
}

// ContrastOptions are the options of `lldiff contrast`.
type ContrastOptions struct {
	IO       *IOStreams
	Model    modelFlags
	AFile    string
	BFile    string
	Pairs    string
	Paired   bool
	Escapes  bool
	Pos      string
	Kinds    string
	Parallel int
	Top      int
	LensK    int
	LensNorm string
	JSON     bool

	SaveVectors string
	Force       bool
	ExportCvec  string
	Method      string
	CvecNorm    string
	CvecOffset  int
}

func newCmdContrast(io *IOStreams, runF func(*ContrastOptions) error) *cobra.Command {
	opts := &ContrastOptions{IO: io}
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
docs/contrast.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Model.check(); err != nil {
				return err
			}
			switch {
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
			if _, err := lens.ParseMode(opts.LensNorm); err != nil {
				return &UsageError{Err: err}
			}
			if _, err := parseRowSpec(opts.Pos); err != nil {
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
	f.StringVar(&opts.LensNorm, "lens-norm", "gamma", "logit lens of a direction v: gamma (W_U·γ⊙v, centred for a LayerNorm), norm (v through the model's final norm, RMSNorm or LayerNorm) or raw (W_U·v)")
	f.BoolVar(&opts.JSON, "json", false, "print one JSON document (schema in docs/contrast.md)")
	f.StringVar(&opts.SaveVectors, "save-vectors", "", "write each hook's mean difference and PC1 as .npy, with index.json, to DIR")
	f.BoolVar(&opts.Force, "force", false, "write into a non-empty --save-vectors directory or replace the --export-cvec file")
	f.StringVar(&opts.ExportCvec, "export-cvec", "", "write a llama.cpp control vector (GGUF) from the resid_post directions")
	f.StringVar(&opts.Method, "method", "mean", "control-vector direction: mean (mean difference) or pca (first principal component)")
	f.StringVar(&opts.CvecNorm, "cvec-norm", "unit", "control-vector scale: unit (norm 1 per layer) or raw (the mean difference as measured)")
	f.IntVar(&opts.CvecOffset, "cvec-layer-offset", 0, "write the vector of resid_post.N as direction.N+OFFSET (1: cvector-generator's convention)")
	return cmd
}

// rowSpec is a parsed --pos for contrast: the last token, every position,
// or a list of indices (negative from the end).
type rowSpec struct {
	all     bool
	indices []int
}

func parseRowSpec(s string) (rowSpec, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "last":
		return rowSpec{indices: []int{-1}}, nil
	case "all":
		return rowSpec{all: true}, nil
	}
	var r rowSpec
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "last" {
			r.indices = append(r.indices, -1)
			continue
		}
		i, err := strconv.Atoi(part)
		if err != nil {
			return r, fmt.Errorf(`--pos %q: %q is not a position; use last, all, or indices such as -1 or 0,3`, s, part)
		}
		if !slices.Contains(r.indices, i) {
			r.indices = append(r.indices, i)
		}
	}
	return r, nil
}

// resolve returns the rows of a prompt of n tokens (for indices).
func (r rowSpec) resolve(n int) ([]int, error) {
	out := make([]int, len(r.indices))
	for k, i := range r.indices {
		j := i
		if j < 0 {
			j += n
		}
		if j < 0 || j >= n {
			return nil, fmt.Errorf("position %d is outside a prompt of %d tokens (valid: %d..%d)", i, n, -n, n-1)
		}
		out[k] = j
	}
	return out, nil
}

// ContrastJSON is the document `contrast --json` prints.
type ContrastJSON struct {
	Model      string              `json:"model"`
	Arch       string              `json:"arch"`
	Paired     bool                `json:"paired"`
	Positions  string              `json:"positions"`
	A          contrastSetJSON     `json:"a"`
	B          contrastSetJSON     `json:"b"`
	Warnings   []string            `json:"warnings"`
	LensNorm   string              `json:"lens_norm"`
	Components []contrastCompJSON  `json:"components"`
	Throughput contrastSpeedJSON   `json:"throughput"`
	Vectors    *vectorIndexJSON    `json:"vectors,omitempty"`
	Cvec       *contrastExportJSON `json:"control_vector,omitempty"`
}

type contrastSetJSON struct {
	Source  string `json:"source"`
	Prompts int    `json:"prompts"`
	// Rows is the number of activation rows (prompts × positions).
	Rows int `json:"rows"`
}

type contrastSpeedJSON struct {
	Sequences      int     `json:"sequences"`
	Tokens         int     `json:"tokens"`
	Parallel       int     `json:"parallel"`
	Seconds        float64 `json:"seconds"`
	PromptsPerSec  float64 `json:"prompts_per_second"`
	TokensPerSecon float64 `json:"tokens_per_second"`
}

// contrastCompJSON is one component. Fields that are undefined for the data
// (NaN: a spread from one row per set, sign consistency of unpaired sets)
// or infinite (a separation without spread) are null.
type contrastCompJSON struct {
	Rank            int             `json:"rank"`
	Hook            string          `json:"hook"`
	Short           string          `json:"short"`
	Kind            string          `json:"kind"`
	Layer           int             `json:"layer"`
	MeanDiffNorm    float64         `json:"mean_diff_norm"`
	ProjMeanA       float64         `json:"proj_mean_a"`
	ProjMeanB       float64         `json:"proj_mean_b"`
	ProjStdA        *float64        `json:"proj_std_a"`
	ProjStdB        *float64        `json:"proj_std_b"`
	Spread          *float64        `json:"spread"`
	Separation      *float64        `json:"separation"`
	HeldOut         *float64        `json:"held_out_accuracy"`
	SignConsistency *float64        `json:"sign_consistency"`
	PC1Explained    float64         `json:"pc1_explained"`
	PC1Cos          float64         `json:"pc1_cos_mean_diff"`
	Lens            *dirLensJSON    `json:"lens,omitempty"`
	ProjA           []float64       `json:"proj_a,omitempty"`
	ProjB           []float64       `json:"proj_b,omitempty"`
	pc              contrast.PC     `json:"-"`
	stats           *contrast.Stats `json:"-"`
}

type dirLensJSON struct {
	MeanDiffTop    []lensTokenJSON `json:"mean_diff_top"`
	MeanDiffBottom []lensTokenJSON `json:"mean_diff_bottom"`
	PC1Top         []lensTokenJSON `json:"pc1_top"`
	PC1Bottom      []lensTokenJSON `json:"pc1_bottom"`
}

type contrastExportJSON struct {
	File        string `json:"file"`
	Method      string `json:"method"`
	Norm        string `json:"norm"`
	LayerOffset int    `json:"layer_offset"`
	// Directions maps each written direction.N to the hook it was
	// measured at.
	Directions []cvecDirJSON `json:"directions"`
	// Skipped lists the resid_post layers that have no direction.N in the
	// file, and why.
	Skipped []string `json:"skipped,omitempty"`
}

type cvecDirJSON struct {
	Tensor string  `json:"tensor"`
	Hook   string  `json:"hook"`
	Norm   float64 `json:"norm"`
}

// vectorIndexJSON is the index.json of --save-vectors.
type vectorIndexJSON struct {
	Dir       string           `json:"dir,omitempty"`
	Model     string           `json:"model"`
	Arch      string           `json:"arch"`
	A         string           `json:"a"`
	B         string           `json:"b"`
	Paired    bool             `json:"paired"`
	Positions string           `json:"positions"`
	Files     []vectorFileJSON `json:"files"`
}

type vectorFileJSON struct {
	File  string `json:"file"`
	Hook  string `json:"hook"`
	Kind  string `json:"kind"`
	Layer int    `json:"layer"`
	// Method is mean_diff (mean(A) − mean(B), as measured) or pc1 (unit,
	// oriented so that A projects higher).
	Method     string   `json:"method"`
	Shape      []int    `json:"shape"`
	Norm       float64  `json:"norm"`
	Separation *float64 `json:"separation"`
}

func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// contrastData is a tokenized dataset with the rows to take from each
// sequence.
type contrastData struct {
	ds     *contrast.Dataset
	idsA   [][]int32
	idsB   [][]int32
	rowsA  [][]int // per prompt, the positions taken
	rowsB  [][]int
	warn   []string
	source [2]string
}

func loadContrastData(opts *ContrastOptions, m *llamacpp.Model) (*contrastData, error) {
	ro := contrast.ReadOptions{Escapes: opts.Escapes}
	var ds *contrast.Dataset
	var err error
	cd := &contrastData{}
	if opts.Pairs != "" {
		ds, err = contrast.ReadPairs(opts.Pairs)
		cd.source = [2]string{opts.Pairs + " (a)", opts.Pairs + " (b)"}
	} else {
		ds, err = contrast.Load(opts.AFile, opts.BFile, opts.Paired, ro)
		cd.source = [2]string{opts.AFile, opts.BFile}
		if opts.BFile == "" {
			cd.source = [2]string{opts.AFile + " (a)", opts.AFile + " (b)"}
		}
	}
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	cd.ds = ds
	spec, _ := parseRowSpec(opts.Pos)
	if spec.all && !ds.Paired {
		return nil, usageErr("--pos all compares position i of A with position i of B and needs pairs: pass --paired or --pairs")
	}
	to := opts.Model.tokenizeOptions()
	tok := func(ps []contrast.Prompt) ([][]int32, error) {
		out := make([][]int32, len(ps))
		for i, p := range ps {
			ids, err := m.Tokenize(p.Text, to)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Source, err)
			}
			if len(ids) == 0 {
				return nil, usageErr("%s: the prompt gives no tokens", p.Source)
			}
			out[i] = ids
		}
		return out, nil
	}
	if cd.idsA, err = tok(ds.A); err != nil {
		return nil, err
	}
	if cd.idsB, err = tok(ds.B); err != nil {
		return nil, err
	}
	if err := checkPromptLengths(opts, m, ds, cd); err != nil {
		return nil, err
	}
	if !spec.all {
		for _, side := range []struct {
			ids  [][]int32
			ps   []contrast.Prompt
			rows *[][]int
		}{{cd.idsA, ds.A, &cd.rowsA}, {cd.idsB, ds.B, &cd.rowsB}} {
			for i, ids := range side.ids {
				r, err := spec.resolve(len(ids))
				if err != nil {
					return nil, usageErr("%s: %v", side.ps[i].Source, err)
				}
				*side.rows = append(*side.rows, r)
			}
		}
		if ds.Paired {
			same := 0
			for i := range cd.idsA {
				if slices.Equal(cd.idsA[i], cd.idsB[i]) {
					same++
				}
			}
			if same > 0 {
				cd.warn = append(cd.warn, fmt.Sprintf("%d pair(s) tokenize identically in A and B and add no difference", same))
			}
		}
		return cd, nil
	}
	// --pos all: pairs of equal token length, from the first difference
	var unequal []string
	skipped := 0
	for i := range cd.idsA {
		a, b := cd.idsA[i], cd.idsB[i]
		if len(a) != len(b) {
			unequal = append(unequal, fmt.Sprintf("%s: A has %d tokens, B %d", ds.A[i].Source, len(a), len(b)))
			continue
		}
		first := len(a)
		for p := range a {
			if a[p] != b[p] {
				first = p
				break
			}
		}
		var rows []int
		for p := first; p < len(a); p++ {
			rows = append(rows, p)
		}
		if len(rows) == 0 {
			skipped++
		}
		cd.rowsA = append(cd.rowsA, rows)
		cd.rowsB = append(cd.rowsB, rows)
	}
	if n := len(unequal); n > 0 {
		more := ""
		if n > 5 {
			more = fmt.Sprintf(" (and %d more)", n-5)
			unequal = unequal[:5]
		}
		return nil, usageErr("--pos all needs pairs of equal token length, and %d pair(s) differ: %s%s; use --pos last, or reword them (lldiff tokenize -m MODEL \"A\" \"B\" shows the tokens)",
			n, strings.Join(unequal, "; "), more)
	}
	if skipped == len(cd.idsA) {
		return nil, usageErr("every pair tokenizes identically in A and B: there is no difference to measure")
	}
	if skipped > 0 {
		cd.warn = append(cd.warn, fmt.Sprintf("%d pair(s) tokenize identically in A and B and were skipped", skipped))
	}
	return cd, nil
}

// checkPromptLengths names the prompts that do not fit the context.
func checkPromptLengths(opts *ContrastOptions, m *llamacpp.Model, ds *contrast.Dataset, cd *contrastData) error {
	limit, what := opts.Model.NCtx, fmt.Sprintf("the context holds %d (-c)", opts.Model.NCtx)
	if limit == 0 {
		limit, what = m.Info.NCtxTrain, fmt.Sprintf("%s was trained on at most %d (pass -c to run past it)", m.Path, m.Info.NCtxTrain)
	}
	if limit <= 0 {
		return nil
	}
	var bad []string
	for _, side := range []struct {
		ids [][]int32
		ps  []contrast.Prompt
	}{{cd.idsA, ds.A}, {cd.idsB, ds.B}} {
		for i, ids := range side.ids {
			if len(ids) > limit {
				bad = append(bad, fmt.Sprintf("%s has %d tokens", side.ps[i].Source, len(ids)))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("and %d more", len(bad)-5))
	}
	return usageErr("prompts too long: %s, but %s", strings.Join(bad, ", "), what)
}

// contrastResult is what contrast computed.
type contrastResult struct {
	doc   ContrastJSON
	comps []*contrastCompJSON // ranked
	hooks []models.Hook
	stats map[models.Hook]*contrast.Stats
}

func contrastRun(opts *ContrastOptions) error {
	mode, _ := lens.ParseMode(opts.LensNorm)
	if opts.ExportCvec != "" && !strings.Contains(","+strings.ReplaceAll(opts.Kinds, " ", "")+",", ",resid_post,") {
		return usageErr("--export-cvec needs resid_post among --kinds: llama.cpp adds control vectors to the residual stream after each layer")
	}
	// output paths first: a mistake there must not cost the whole run
	if opts.SaveVectors != "" {
		if err := checkOutDir(opts.SaveVectors, "--save-vectors", opts.Force); err != nil {
			return err
		}
	}
	if opts.ExportCvec != "" {
		if err := checkOutFile(opts.ExportCvec, "--export-cvec", opts.Force); err != nil {
			return err
		}
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	kinds, err := parseKinds(opts.Kinds, m)
	if err != nil {
		return err
	}
	cd, err := loadContrastData(opts, m)
	if err != nil {
		return err
	}
	res, err := computeContrast(opts, m, cd, kinds)
	if err != nil {
		return err
	}
	if opts.LensK > 0 {
		if err := contrastLens(opts, m, res, mode); err != nil {
			return err
		}
	}
	if opts.SaveVectors != "" {
		idx, err := saveVectors(opts, m, res)
		if err != nil {
			return err
		}
		res.doc.Vectors = idx
	}
	if opts.ExportCvec != "" {
		ex, err := exportCvec(opts, m, res)
		if err != nil {
			return err
		}
		res.doc.Cvec = ex
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, res.doc)
	}
	return printContrast(opts, m, res)
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

// contrastSeqs orders the sequences for decoding: pairs side by side (so a
// pair shares a batch), unpaired sets one after the other. side[i] and
// index[i] say where sequence i came from.
func contrastSeqs(cd *contrastData) (seqs [][]int32, side []int, index []int) {
	if cd.ds.Paired {
		for i := range cd.idsA {
			seqs = append(seqs, cd.idsA[i], cd.idsB[i])
			side = append(side, 0, 1)
			index = append(index, i, i)
		}
		return
	}
	for s, ids := range [][][]int32{cd.idsA, cd.idsB} {
		for i, x := range ids {
			seqs = append(seqs, x)
			side = append(side, s)
			index = append(index, i)
		}
	}
	return
}

// collectRows decodes the sequences opts.Parallel at a time and copies the
// chosen rows of every hook into per-hook sample matrices, dropping each
// group's caches before the next: memory holds the chosen rows, not every
// activation of every prompt.
func collectRows(opts *ContrastOptions, ctx *llamacpp.Context, cd *contrastData, hooks []models.Hook, width map[models.Hook]int) (a, b map[models.Hook]*contrast.Samples, speed contrastSpeedJSON, err error) {
	seqs, side, index := contrastSeqs(cd)
	nRows := [2]int{}
	for _, r := range cd.rowsA {
		nRows[0] += len(r)
	}
	for _, r := range cd.rowsB {
		nRows[1] += len(r)
	}
	a, b = map[models.Hook]*contrast.Samples{}, map[models.Hook]*contrast.Samples{}
	p := newProgress(opts.IO, len(seqs))
	t0 := time.Now()
	tokens := 0
	for start := 0; start < len(seqs); start += opts.Parallel {
		end := min(start+opts.Parallel, len(seqs))
		pos := make([][]int, end-start)
		for k := range pos {
			i := start + k
			if side[i] == 0 {
				pos[k] = cd.rowsA[index[i]]
			} else {
				pos[k] = cd.rowsB[index[i]]
			}
		}
		// pairs identical in A and B under --pos all have no rows
		var sub [][]int32
		var subPos [][]int
		var subIdx []int
		for k, ps := range pos {
			tokens += len(seqs[start+k])
			if len(ps) > 0 {
				sub, subPos, subIdx = append(sub, seqs[start+k]), append(subPos, ps), append(subIdx, start+k)
			}
		}
		got, err := ctx.RunRows(sub, subPos, hooks)
		if err != nil {
			p.done()
			return nil, nil, speed, err
		}
		for k, r := range got {
			i := subIdx[k]
			dst := a
			if side[i] == 1 {
				dst = b
			}
			for _, h := range hooks {
				act := r.Acts[h]
				s := dst[h]
				if s == nil {
					width[h] = act.Width
					s = contrast.NewSamples(act.Width, nRows[side[i]])
					dst[h] = s
				}
				// rows of one prompt form a group: held-out statistics
				// leave them out together
				for j := range act.Rows() {
					s.AppendGroup(act.Row(j), index[i])
				}
			}
		}
		p.update(end)
	}
	p.done()
	sec := time.Since(t0).Seconds()
	speed = contrastSpeedJSON{Sequences: len(seqs), Tokens: tokens, Parallel: opts.Parallel, Seconds: sec}
	if sec > 0 {
		speed.PromptsPerSec = float64(len(seqs)) / sec
		speed.TokensPerSecon = float64(tokens) / sec
	}
	return a, b, speed, nil
}

func computeContrast(opts *ContrastOptions, m *llamacpp.Model, cd *contrastData, kinds []models.Kind) (*contrastResult, error) {
	var hooks []models.Hook
	for l := range m.NLayer() {
		for _, k := range kinds {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
	}
	hooks = models.SortHooks(hooks)
	seqs, _, _ := contrastSeqs(cd)
	ctx, err := opts.Model.context(m, seqs, opts.Parallel)
	if err != nil {
		return nil, err
	}
	defer ctx.Close()
	width := map[models.Hook]int{}
	sa, sb, speed, err := collectRows(opts, ctx, cd, hooks, width)
	if err != nil {
		return nil, err
	}
	res := &contrastResult{hooks: hooks, stats: map[models.Hook]*contrast.Stats{}}
	doc := &res.doc
	doc.Model, doc.Arch, doc.Paired, doc.Positions = opts.Model.Model, m.Arch(), cd.ds.Paired, strings.TrimSpace(opts.Pos)
	doc.A = contrastSetJSON{Source: cd.source[0], Prompts: len(cd.ds.A), Rows: sa[hooks[0]].N}
	doc.B = contrastSetJSON{Source: cd.source[1], Prompts: len(cd.ds.B), Rows: sb[hooks[0]].N}
	doc.Warnings = append([]string{}, cd.warn...)
	doc.Throughput = speed
	mode, _ := lens.ParseMode(opts.LensNorm)
	doc.LensNorm = mode.String()
	if doc.A.Rows < 2 || doc.B.Rows < 2 {
		doc.Warnings = append(doc.Warnings, fmt.Sprintf("A has %d row(s) and B %d: spread, separation and held-out accuracy need at least 2 rows per set (–); give more prompts", doc.A.Rows, doc.B.Rows))
	}
	if !cd.ds.Paired && len(cd.ds.A) == len(cd.ds.B) && opts.Pairs == "" {
		doc.Warnings = append(doc.Warnings, "A and B have as many prompts: if line i of A matches line i of B, --paired adds sign consistency and allows --pos all")
	}
	for _, h := range hooks {
		st, err := contrast.Compute(sa[h], sb[h], cd.ds.Paired)
		if err != nil {
			return nil, err
		}
		res.stats[h] = st
		c := &contrastCompJSON{
			Hook: h.Name(), Short: h.Short(), Kind: string(h.Kind), Layer: h.Layer,
			MeanDiffNorm: st.Norm, ProjMeanA: st.MeanA, ProjMeanB: st.MeanB,
			ProjStdA: finite(st.StdA), ProjStdB: finite(st.StdB), Spread: finite(st.Spread),
			Separation: finite(st.Separation), HeldOut: finite(st.HeldOut), SignConsistency: finite(st.SignConsistency),
			PC1Explained: st.PC.Explained, PC1Cos: st.PCCos, ProjA: st.ProjA, ProjB: st.ProjB,
			pc: st.PC, stats: st,
		}
		res.comps = append(res.comps, c)
	}
	// rank by separation: +Inf first, NaN last, then by ‖Δμ‖, then in
	// model order
	slices.SortStableFunc(res.comps, func(x, y *contrastCompJSON) int {
		sx, sy := x.stats.Separation, y.stats.Separation
		nx, ny := math.IsNaN(sx), math.IsNaN(sy)
		switch {
		case nx != ny:
			if nx {
				return 1
			}
			return -1
		case !nx && sx != sy:
			return cmp.Compare(sy, sx)
		}
		return cmp.Compare(y.stats.Norm, x.stats.Norm)
	})
	if !slices.ContainsFunc(res.comps, func(c *contrastCompJSON) bool { return c.stats.Norm != 0 }) {
		doc.Warnings = append(doc.Warnings, "A and B give the same activations at the chosen positions (every ‖Δμ‖ is 0; position 0 is the same first token in every prompt): there is nothing to contrast; choose positions where the prompts differ")
	}
	for i, c := range res.comps {
		c.Rank = i + 1
		doc.Components = append(doc.Components, *c)
	}
	return res, nil
}

// contrastLens unembeds each component's unit mean difference and PC1.
func contrastLens(opts *ContrastOptions, m *llamacpp.Model, res *contrastResult, mode lens.Mode) error {
	u, err := m.NewUnembedderWith(llamacpp.UnembedOptions{Threads: opts.Model.Threads, GPU: opts.Model.GPULayers > 0})
	if err != nil {
		return err
	}
	defer u.Close()
	d, nv := m.NEmbd(), m.NVocab()
	var x []float32
	var which []int
	for i, c := range res.comps {
		if len(c.stats.MeanDiff) != d {
			continue // z: heads before W_O are not in the residual basis
		}
		x = append(x, contrast.Unit(c.stats.MeanDiff)...)
		x = append(x, c.pc.Vec...)
		which = append(which, i)
	}
	if len(which) == 0 {
		return nil
	}
	lg, err := u.Unembed(nil, x, 2*len(which), mode)
	if err != nil {
		return err
	}
	toLens := func(ts []lens.Token) []lensTokenJSON {
		out := make([]lensTokenJSON, len(ts))
		for i, t := range ts {
			out[i] = lensTokenJSON{Piece: m.Printable(t.ID), ID: t.ID, Value: t.Value}
		}
		return out
	}
	for k, i := range which {
		md, pc := lg[2*k*nv:(2*k+1)*nv], lg[(2*k+1)*nv:(2*k+2)*nv]
		l := &dirLensJSON{
			MeanDiffTop: toLens(lens.TopK(md, opts.LensK)), MeanDiffBottom: toLens(lens.BottomK(md, opts.LensK)),
			PC1Top: toLens(lens.TopK(pc, opts.LensK)), PC1Bottom: toLens(lens.BottomK(pc, opts.LensK)),
		}
		res.comps[i].Lens = l
		res.doc.Components[i].Lens = l
	}
	return nil
}

func saveVectors(opts *ContrastOptions, m *llamacpp.Model, res *contrastResult) (*vectorIndexJSON, error) {
	if err := checkOutDir(opts.SaveVectors, "--save-vectors", opts.Force); err != nil {
		return nil, err
	}
	if err := makeOutDir(opts.SaveVectors); err != nil {
		return nil, err
	}
	idx := &vectorIndexJSON{
		Model: opts.Model.Model, Arch: m.Arch(), A: res.doc.A.Source, B: res.doc.B.Source,
		Paired: res.doc.Paired, Positions: res.doc.Positions,
	}
	for _, h := range res.hooks {
		st := res.stats[h]
		for _, v := range []struct {
			method string
			vec    []float32
			norm   float64
		}{{"mean_diff", st.MeanDiff, st.Norm}, {"pc1", st.PC.Vec, contrast.Norm(st.PC.Vec)}} {
			name := fmt.Sprintf("%s.%s.npy", h.Name(), v.method)
			if err := npy.WriteFile(filepath.Join(opts.SaveVectors, name), []int{len(v.vec)}, v.vec); err != nil {
				return nil, err
			}
			idx.Files = append(idx.Files, vectorFileJSON{
				File: name, Hook: h.Name(), Kind: string(h.Kind), Layer: h.Layer, Method: v.method,
				Shape: []int{len(v.vec)}, Norm: v.norm, Separation: finite(st.Separation),
			})
		}
	}
	f, err := os.Create(filepath.Join(opts.SaveVectors, "index.json"))
	if err != nil {
		return nil, err
	}
	if err := writeJSON(f, idx); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	idx.Dir = opts.SaveVectors
	return idx, nil
}

// exportCvec writes the resid_post directions as a llama.cpp control
// vector: the vector of resid_post.L as direction.(L+offset), for the
// layers llama.cpp can add to (1..n_layer−1).
func exportCvec(opts *ContrastOptions, m *llamacpp.Model, res *contrastResult) (*contrastExportJSON, error) {
	nl := m.NLayer()
	cv := &contrast.ControlVector{
		ModelHint: m.Arch(), Directions: map[int][]float32{}, Offset: opts.CvecOffset,
		Meta: map[string]string{
			"method": opts.Method, "norm": opts.CvecNorm, "hook": string(models.ResidPost),
			"model": filepath.Base(opts.Model.Model), "positions": res.doc.Positions,
			"a": res.doc.A.Source, "b": res.doc.B.Source,
		},
	}
	ex := &contrastExportJSON{File: opts.ExportCvec, Method: opts.Method, Norm: opts.CvecNorm, LayerOffset: opts.CvecOffset}
	for l := range nl {
		h := models.Hook{Kind: models.ResidPost, Layer: l}
		n := l + opts.CvecOffset
		if n < 1 || n >= nl {
			why := "llama.cpp never adds a vector to layer 0 and refuses a direction.0"
			if n >= nl {
				why = fmt.Sprintf("the model has no layer %d for llama.cpp to add direction.%d to", n, n)
			}
			ex.Skipped = append(ex.Skipped, fmt.Sprintf("%s: %s", h.Short(), why))
			continue
		}
		st := res.stats[h]
		if st.Norm == 0 {
			ex.Skipped = append(ex.Skipped, fmt.Sprintf("%s: A and B do not differ there (the mean difference is zero)", h.Short()))
			continue
		}
		var v []float32
		switch {
		case opts.Method == "pca":
			v = append([]float32(nil), st.PC.Vec...)
		case opts.CvecNorm == "unit":
			v = contrast.Unit(st.MeanDiff)
		default:
			v = append([]float32(nil), st.MeanDiff...)
		}
		cv.Directions[n] = v
		ex.Directions = append(ex.Directions, cvecDirJSON{Tensor: fmt.Sprintf("direction.%d", n), Hook: h.Name(), Norm: contrast.Norm(v)})
	}
	if len(cv.Directions) == 0 {
		if nl > 1 {
			return nil, usageErr("every resid_post direction is zero: A and B give the same activations at the chosen positions (--pos %s; position 0 is the same first token in every prompt), so there is nothing to steer with: choose positions where the prompts differ", cmp.Or(res.doc.Positions, "last"))
		}
		return nil, fmt.Errorf("no layer can hold a control vector: the model has %d layer(s), and llama.cpp adds vectors to layers 1..n_layer−1 only", nl)
	}
	if err := checkOutFile(opts.ExportCvec, "--export-cvec", opts.Force); err != nil {
		return nil, err
	}
	if err := cv.WriteFile(opts.ExportCvec, opts.Force); err != nil {
		return nil, err
	}
	return ex, nil
}

func printContrast(opts *ContrastOptions, m *llamacpp.Model, res *contrastResult) error {
	out := opts.IO.Out
	doc := &res.doc
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
		if c.Separation == nil && c.stats != nil && math.IsInf(c.stats.Separation, 1) {
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
	if err := printContrastLayers(opts.IO, res); err != nil {
		return err
	}
	if opts.LensK > 0 {
		fmt.Fprintf(out, "\n== logit lens of the resid_post directions (%s; ↑ promoted toward A, ↓ toward B) ==\n", dirLensDesc(doc.LensNorm))
		join := func(ts []lensTokenJSON) string {
			var s []string
			for _, t := range ts {
				s = append(s, t.Piece)
			}
			return strings.Join(s, " ")
		}
		var rows [][]string
		byHook := map[string]*contrastCompJSON{}
		for i := range doc.Components {
			byHook[doc.Components[i].Hook] = &doc.Components[i]
		}
		for l := range m.NLayer() {
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
		fmt.Fprintf(out, "steer with: lldiff steer -m %s --cvec %s --scale 4 \"PROMPT\"  (llama.cpp: --control-vector-scaled %s 4)\n", opts.Model.Model, ex.File, ex.File)
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
func printContrastLayers(io *IOStreams, res *contrastResult) error {
	fmt.Fprintln(io.Out, "\n== per layer: separation (Cohen's d along Δμ) ==")
	var kinds []models.Kind
	byLayer := map[int]map[models.Kind]float64{}
	maxSep := 0.0
	for _, h := range res.hooks {
		if !slices.Contains(kinds, h.Kind) {
			kinds = append(kinds, h.Kind)
		}
		if byLayer[h.Layer] == nil {
			byLayer[h.Layer] = map[models.Kind]float64{}
		}
		s := res.stats[h].Separation
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

// progress shows "decoding i/n prompts" on a terminal's error stream.
type progress struct {
	io    *IOStreams
	n     int
	t0    time.Time
	shown bool
}

func newProgress(io *IOStreams, n int) *progress {
	return &progress{io: io, n: n, t0: time.Now()}
}

func (p *progress) update(i int) {
	if !p.io.IsTerminal {
		return
	}
	rate := float64(i) / max(time.Since(p.t0).Seconds(), 1e-9)
	fmt.Fprintf(p.io.ErrOut, "\rdecoding %d/%d prompts (%.1f prompts/s)", i, p.n, rate)
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.io.ErrOut, "\r\033[K")
		p.shown = false
	}
}
