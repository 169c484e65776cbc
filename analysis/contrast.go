package analysis

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// ContrastOptions configure Contrast.
type ContrastOptions struct {
	// Model names the model in the result.
	Model string
	// Dataset holds the two sets of prompts; Sources names them.
	Dataset *contrast.Dataset
	Sources [2]string
	// Positions are the rows taken from each prompt; Spec is its text as
	// given, reported in the result.
	Positions RowSpec
	Spec      string
	Tokenize  models.TokenizeOptions
	// Kinds are the per-layer kinds measured at every layer.
	Kinds []models.Kind
	// Parallel is how many prompts are decoded together (at least 1).
	Parallel int
	// NCtx is the context size asked for; 0 leaves the model's trained
	// context as the limit of the prompts.
	NCtx int
	// LensK > 0 reads the LensK top and bottom tokens of each direction
	// through the logit lens in mode Lens.
	LensK int
	Lens  models.LensMode
	// Progress hears how many prompts are decoded.
	Progress Progress
}

// ContrastResult is the document `contrast --json` prints
// (docs/contrast.md).
type ContrastResult struct {
	Model string `json:"model"`
	// Summary says in words where and how the sets differ, from the
	// components.
	Summary    *ContrastSummary                `json:"summary"`
	Arch       string                          `json:"arch"`
	Paired     bool                            `json:"paired"`
	Positions  string                          `json:"positions"`
	A          ContrastSet                     `json:"a"`
	B          ContrastSet                     `json:"b"`
	Warnings   []string                        `json:"warnings"`
	LensNorm   string                          `json:"lens_norm"`
	Components []ContrastComp                  `json:"components"`
	Throughput ContrastSpeed                   `json:"throughput"`
	Vectors    *VectorIndex                    `json:"vectors,omitempty"`
	Cvec       *ContrastExport                 `json:"control_vector,omitempty"`
	Hooks      []models.Hook                   `json:"-"` // the measured hooks, in model order
	Stats      map[models.Hook]*contrast.Stats `json:"-"`
}

// ContrastSet describes one set.
type ContrastSet struct {
	Source  string `json:"source"`
	Prompts int    `json:"prompts"`
	// Rows is the number of activation rows (prompts × positions).
	Rows int `json:"rows"`
}

// ContrastSpeed is the decoding throughput.
type ContrastSpeed struct {
	Sequences      int     `json:"sequences"`
	Tokens         int     `json:"tokens"`
	Parallel       int     `json:"parallel"`
	Seconds        float64 `json:"seconds"`
	PromptsPerSec  float64 `json:"prompts_per_second"`
	TokensPerSecon float64 `json:"tokens_per_second"`
}

// ContrastComp is one component. Fields that are undefined for the data
// (NaN: a spread from one row per set, sign consistency of unpaired sets)
// or infinite (a separation without spread) are null.
type ContrastComp struct {
	Rank            int       `json:"rank"`
	Hook            string    `json:"hook"`
	Short           string    `json:"short"`
	Kind            string    `json:"kind"`
	Layer           int       `json:"layer"`
	MeanDiffNorm    float64   `json:"mean_diff_norm"`
	ProjMeanA       float64   `json:"proj_mean_a"`
	ProjMeanB       float64   `json:"proj_mean_b"`
	ProjStdA        *float64  `json:"proj_std_a"`
	ProjStdB        *float64  `json:"proj_std_b"`
	Spread          *float64  `json:"spread"`
	Separation      *float64  `json:"separation"`
	HeldOut         *float64  `json:"held_out_accuracy"`
	SignConsistency *float64  `json:"sign_consistency"`
	PC1Explained    float64   `json:"pc1_explained"`
	PC1Cos          float64   `json:"pc1_cos_mean_diff"`
	Lens            *DirLens  `json:"lens,omitempty"`
	ProjA           []float64 `json:"proj_a,omitempty"`
	ProjB           []float64 `json:"proj_b,omitempty"`
}

// DirLens is the logit lens of a component's directions.
type DirLens struct {
	MeanDiffTop    []LensToken `json:"mean_diff_top"`
	MeanDiffBottom []LensToken `json:"mean_diff_bottom"`
	PC1Top         []LensToken `json:"pc1_top"`
	PC1Bottom      []LensToken `json:"pc1_bottom"`
}

// ContrastExport describes a control vector written from a contrast.
type ContrastExport struct {
	File        string `json:"file"`
	Method      string `json:"method"`
	Norm        string `json:"norm"`
	LayerOffset int    `json:"layer_offset"`
	// Directions maps each written direction.N to the hook it was
	// measured at.
	Directions []CvecDir `json:"directions"`
	// Skipped lists the resid_post layers that have no direction.N in the
	// file, and why.
	Skipped []string `json:"skipped,omitempty"`
}

// CvecDir is one direction of a control vector.
type CvecDir struct {
	Tensor string  `json:"tensor"`
	Hook   string  `json:"hook"`
	Norm   float64 `json:"norm"`
}

// VectorIndex is the index.json of saved vectors.
type VectorIndex struct {
	Dir       string       `json:"dir,omitempty"`
	Model     string       `json:"model"`
	Arch      string       `json:"arch"`
	A         string       `json:"a"`
	B         string       `json:"b"`
	Paired    bool         `json:"paired"`
	Positions string       `json:"positions"`
	Files     []VectorFile `json:"files"`
}

// VectorFile is one saved vector.
type VectorFile struct {
	File  string `json:"file"`
	Hook  string `json:"hook"`
	Kind  string `json:"kind"`
	Layer int    `json:"layer"`
	// Method is mean_diff (mean(A) − mean(B), as measured) or pc1 (unit,
	// oriented so that A projects higher).
	Method string `json:"method"`
	Shape  []int  `json:"shape"`
	// Bytes is the size of the file: a file of another size is not the
	// one the index describes (truncated, or replaced by a later run).
	Bytes      int64    `json:"bytes"`
	Norm       float64  `json:"norm"`
	Separation *float64 `json:"separation"`
}

// Finite returns &x, or nil for NaN and ±Inf (null in JSON).
func Finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// ContrastData is a tokenized dataset with the rows to take from each
// sequence.
type ContrastData struct {
	Dataset      *contrast.Dataset
	IDsA, IDsB   [][]int32
	RowsA, RowsB [][]int // per prompt, the positions taken
	Warnings     []string
}

// TokenizeContrast tokenizes the dataset of o and resolves the rows to
// take. Prompts without tokens, rows outside a prompt, prompts longer than
// the context and, for all positions, pairs of unequal length are
// InputErrors.
func TokenizeContrast(e models.Engine, o ContrastOptions) (*ContrastData, error) {
	ds := o.Dataset
	cd := &ContrastData{Dataset: ds}
	spec := o.Positions
	if spec.All && !ds.Paired {
		return nil, inputErr("--pos all compares position i of A with position i of B and needs pairs: pass --paired or --pairs")
	}
	tok := func(ps []contrast.Prompt) ([][]int32, error) {
		out := make([][]int32, len(ps))
		for i, p := range ps {
			ids, err := e.Tokenize(p.Text, o.Tokenize)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.Source, err)
			}
			if len(ids) == 0 {
				return nil, inputErr("%s: the prompt gives no tokens", p.Source)
			}
			out[i] = ids
		}
		return out, nil
	}
	var err error
	if cd.IDsA, err = tok(ds.A); err != nil {
		return nil, err
	}
	if cd.IDsB, err = tok(ds.B); err != nil {
		return nil, err
	}
	if err := checkPromptLengths(e, o.NCtx, cd); err != nil {
		return nil, err
	}
	double := 0
	for _, ids := range slices.Concat(cd.IDsA, cd.IDsB) {
		if b := BOSOf(e, o.Tokenize, ids); b.Added && b.FromText {
			double++
		}
	}
	if double > 0 {
		cd.Warnings = append(cd.Warnings, fmt.Sprintf("%d prompt(s) start with two BOS tokens: one added by the tokenizer and one from the text (special-token text parsed with --special); drop it from the text or pass --bos no", double))
	}
	if !spec.All {
		for _, side := range []struct {
			ids  [][]int32
			ps   []contrast.Prompt
			rows *[][]int
		}{{cd.IDsA, ds.A, &cd.RowsA}, {cd.IDsB, ds.B, &cd.RowsB}} {
			for i, ids := range side.ids {
				r, err := spec.Resolve(len(ids))
				if err != nil {
					return nil, inputErr("%s: %v", side.ps[i].Source, err)
				}
				*side.rows = append(*side.rows, r)
			}
		}
		if ds.Paired {
			// a pair that tokenizes identically has no difference to
			// measure: its rows would add rounding noise (two sequences of
			// a batch differ in the last bits), and dilute the mean
			same := 0
			for i := range cd.IDsA {
				if slices.Equal(cd.IDsA[i], cd.IDsB[i]) {
					cd.RowsA[i], cd.RowsB[i] = nil, nil
					same++
				}
			}
			if same == len(cd.IDsA) {
				return nil, inputErr("every pair tokenizes identically in A and B: there is no difference to measure")
			}
			if same > 0 {
				cd.Warnings = append(cd.Warnings, fmt.Sprintf("%d pair(s) tokenize identically in A and B and were skipped", same))
			}
		}
		return cd, nil
	}
	// all positions: pairs of equal token length, from the first difference
	var unequal []string
	skipped := 0
	for i := range cd.IDsA {
		a, b := cd.IDsA[i], cd.IDsB[i]
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
		cd.RowsA = append(cd.RowsA, rows)
		cd.RowsB = append(cd.RowsB, rows)
	}
	if n := len(unequal); n > 0 {
		more := ""
		if n > 5 {
			more = fmt.Sprintf(" (and %d more)", n-5)
			unequal = unequal[:5]
		}
		return nil, inputErr("--pos all needs pairs of equal token length, and %d pair(s) differ: %s%s; use --pos last, or reword them (lldiff tokenize -m MODEL \"A\" \"B\" shows the tokens)",
			n, strings.Join(unequal, "; "), more)
	}
	if skipped == len(cd.IDsA) {
		return nil, inputErr("every pair tokenizes identically in A and B: there is no difference to measure")
	}
	if skipped > 0 {
		cd.Warnings = append(cd.Warnings, fmt.Sprintf("%d pair(s) tokenize identically in A and B and were skipped", skipped))
	}
	return cd, nil
}

// checkPromptLengths names the prompts that do not fit the context.
func checkPromptLengths(e models.Engine, nCtx int, cd *ContrastData) error {
	info := e.ModelInfo()
	limit, what := nCtx, fmt.Sprintf("the context holds %d (-c)", nCtx)
	if limit == 0 {
		limit, what = info.NCtxTrain, fmt.Sprintf("%s was trained on at most %d (pass -c to run past it)", e.Path(), info.NCtxTrain)
	}
	if limit <= 0 {
		return nil
	}
	var bad []string
	for _, side := range []struct {
		ids [][]int32
		ps  []contrast.Prompt
	}{{cd.IDsA, cd.Dataset.A}, {cd.IDsB, cd.Dataset.B}} {
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
	return inputErr("prompts too long: %s, but %s", strings.Join(bad, ", "), what)
}

// Seqs orders the sequences for decoding: pairs side by side (so a pair
// shares a batch), unpaired sets one after the other. side[i] and index[i]
// say where sequence i came from.
func (cd *ContrastData) Seqs() (seqs [][]int32, side []int, index []int) {
	if cd.Dataset.Paired {
		for i := range cd.IDsA {
			seqs = append(seqs, cd.IDsA[i], cd.IDsB[i])
			side = append(side, 0, 1)
			index = append(index, i, i)
		}
		return
	}
	for s, ids := range [][][]int32{cd.IDsA, cd.IDsB} {
		for i, x := range ids {
			seqs = append(seqs, x)
			side = append(side, s)
			index = append(index, i)
		}
	}
	return
}

// RowRunner keeps chosen rows of decoded sequences: a models.Runner, or a
// llamacpp.Context.
type RowRunner interface {
	RunRows(seqs [][]int32, pos [][]int, hooks []models.Hook) ([]*models.SeqRows, error)
}

// CollectRows decodes the sequences parallel at a time and copies the
// chosen rows of every hook into per-hook sample matrices, dropping each
// group's rows before the next: memory holds the chosen rows, not every
// activation of every prompt.
func CollectRows(r RowRunner, cd *ContrastData, hooks []models.Hook, parallel int, p Progress) (a, b map[models.Hook]*contrast.Samples, speed ContrastSpeed, err error) {
	p = progressOr(p)
	seqs, side, index := cd.Seqs()
	nRows := [2]int{}
	for _, r := range cd.RowsA {
		nRows[0] += len(r)
	}
	for _, r := range cd.RowsB {
		nRows[1] += len(r)
	}
	a, b = map[models.Hook]*contrast.Samples{}, map[models.Hook]*contrast.Samples{}
	p.Start(len(seqs))
	t0 := time.Now()
	tokens := 0
	for start := 0; start < len(seqs); start += parallel {
		end := min(start+parallel, len(seqs))
		pos := make([][]int, end-start)
		for k := range pos {
			i := start + k
			if side[i] == 0 {
				pos[k] = cd.RowsA[index[i]]
			} else {
				pos[k] = cd.RowsB[index[i]]
			}
		}
		// pairs identical in A and B under all positions have no rows
		var sub [][]int32
		var subPos [][]int
		var subIdx []int
		for k, ps := range pos {
			tokens += len(seqs[start+k])
			if len(ps) > 0 {
				sub, subPos, subIdx = append(sub, seqs[start+k]), append(subPos, ps), append(subIdx, start+k)
			}
		}
		got, err := r.RunRows(sub, subPos, hooks)
		if err != nil {
			p.Done()
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
		p.Update(end)
	}
	p.Done()
	sec := time.Since(t0).Seconds()
	speed = ContrastSpeed{Sequences: len(seqs), Tokens: tokens, Parallel: parallel, Seconds: sec}
	if sec > 0 {
		speed.PromptsPerSec = float64(len(seqs)) / sec
		speed.TokensPerSecon = float64(tokens) / sec
	}
	return a, b, speed, nil
}

// Contrast measures, at every layer and kind, how two sets of prompts
// differ: the mean difference, the projections of every row on it, their
// separation and held-out accuracy, and PC1 of the differences; ranked by
// separation. With LensK it reads each direction through the logit lens.
func Contrast(e models.Engine, o ContrastOptions) (*ContrastResult, error) {
	cd, err := TokenizeContrast(e, o)
	if err != nil {
		return nil, err
	}
	info := e.ModelInfo()
	hooks := contrastHooks(info.NLayer, o.Kinds)
	seqs, _, _ := cd.Seqs()
	run, err := e.NewRunner(seqs, o.Parallel)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	sa, sb, speed, err := CollectRows(run, cd, hooks, o.Parallel, o.Progress)
	if err != nil {
		return nil, err
	}
	if err := checkSamplesFinite(e, hooks, cd, sa, sb); err != nil {
		return nil, err
	}
	ds := cd.Dataset
	facts := contrastFacts{
		Arch: info.Arch, Paired: ds.Paired, PromptsA: len(ds.A), PromptsB: len(ds.B),
		RowsA: sa[hooks[0]].N, RowsB: sb[hooks[0]].N, Warnings: cd.Warnings, Speed: speed, Hooks: hooks,
	}
	return finishContrast(e, o, facts, func(h models.Hook) (*contrast.Stats, error) {
		return contrast.Compute(sa[h], sb[h], ds.Paired)
	})
}

// contrastHooks returns the hooks of kinds at every layer, in model order.
func contrastHooks(nLayer int, kinds []models.Kind) []models.Hook {
	var hooks []models.Hook
	for l := range nLayer {
		for _, k := range kinds {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
	}
	return models.SortHooks(hooks)
}

// contrastFacts are what a contrast result reports besides the statistics
// of its hooks: from a run (Contrast), or from merged shards
// (ContrastFromStats).
type contrastFacts struct {
	Arch               string
	Paired             bool
	PromptsA, PromptsB int
	RowsA, RowsB       int
	Warnings           []string
	Speed              ContrastSpeed
	Hooks              []models.Hook
}

// finishContrast computes the statistics of every hook with stats (one
// hook at a time: the caller may hold only that hook's rows), ranks the
// components and reads their lens through e (LensK > 0 only; e may be nil
// otherwise).
func finishContrast(e models.Engine, o ContrastOptions, f contrastFacts, stats func(models.Hook) (*contrast.Stats, error)) (*ContrastResult, error) {
	hooks := f.Hooks
	res := &ContrastResult{Hooks: hooks, Stats: map[models.Hook]*contrast.Stats{}}
	res.Model, res.Arch, res.Paired, res.Positions = o.Model, f.Arch, f.Paired, strings.TrimSpace(o.Spec)
	res.A = ContrastSet{Source: o.Sources[0], Prompts: f.PromptsA, Rows: f.RowsA}
	res.B = ContrastSet{Source: o.Sources[1], Prompts: f.PromptsB, Rows: f.RowsB}
	res.Warnings = append([]string{}, f.Warnings...)
	res.Throughput = f.Speed
	res.LensNorm = o.Lens.String()
	if res.A.Rows < 2 || res.B.Rows < 2 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("A has %d row(s) and B %d: spread, separation and held-out accuracy need at least 2 rows per set (–); give more prompts", res.A.Rows, res.B.Rows))
	}
	if !f.Paired && f.PromptsA == f.PromptsB {
		res.Warnings = append(res.Warnings, "A and B have as many prompts: if line i of A matches line i of B, --paired adds sign consistency and allows --pos all")
	}
	type comp struct {
		c  ContrastComp
		h  models.Hook
		st *contrast.Stats
	}
	var comps []*comp
	for _, h := range hooks {
		st, err := stats(h)
		if err != nil {
			return nil, err
		}
		res.Stats[h] = st
		comps = append(comps, &comp{h: h, st: st, c: ContrastComp{
			Hook: h.Name(), Short: h.Short(), Kind: string(h.Kind), Layer: h.Layer,
			MeanDiffNorm: st.Norm, ProjMeanA: st.MeanA, ProjMeanB: st.MeanB,
			ProjStdA: Finite(st.StdA), ProjStdB: Finite(st.StdB), Spread: Finite(st.Spread),
			Separation: Finite(st.Separation), HeldOut: Finite(st.HeldOut), SignConsistency: Finite(st.SignConsistency),
			PC1Explained: st.PC.Explained, PC1Cos: st.PCCos, ProjA: st.ProjA, ProjB: st.ProjB,
		}})
	}
	// rank by separation: +Inf first, NaN last, then by ‖Δμ‖, then in
	// model order
	slices.SortStableFunc(comps, func(x, y *comp) int {
		sx, sy := x.st.Separation, y.st.Separation
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
		return cmp.Compare(y.st.Norm, x.st.Norm)
	})
	if !slices.ContainsFunc(comps, func(c *comp) bool { return !contrast.Negligible(c.st.Norm, c.st.Scale) }) {
		res.Warnings = append(res.Warnings, "A and B give the same activations at the chosen positions (every ‖Δμ‖ is 0, or at the level of float32 rounding; position 0 is the same first token in every prompt): there is nothing to contrast; choose positions where the prompts differ")
	}
	ranked := make([]*contrast.Stats, len(comps))
	for i, c := range comps {
		c.c.Rank = i + 1
		res.Components = append(res.Components, c.c)
		ranked[i] = c.st
	}
	if o.LensK > 0 {
		if err := contrastLens(e, res, ranked, o); err != nil {
			return nil, err
		}
	}
	res.Summary = SummarizeContrast(res)
	return res, nil
}

// contrastLens unembeds each component's unit mean difference and PC1;
// stats[i] are the statistics of res.Components[i].
func contrastLens(e models.Engine, res *ContrastResult, stats []*contrast.Stats, o ContrastOptions) error {
	u, err := e.NewUnembedder()
	if err != nil {
		return err
	}
	defer u.Close()
	d, nv := e.ModelInfo().DModel, e.NVocab()
	var x []float32
	var which []int
	for i, st := range stats {
		if len(st.MeanDiff) != d {
			continue // z: heads before W_O are not in the residual basis
		}
		x = append(x, diff.Unit(st.MeanDiff)...)
		x = append(x, st.PC.Vec...)
		which = append(which, i)
	}
	if len(which) == 0 {
		return nil
	}
	lg, err := u.Unembed(nil, x, 2*len(which), o.Lens)
	if err != nil {
		return err
	}
	toLens := func(ts []lens.Token) []LensToken {
		out := make([]LensToken, len(ts))
		for i, t := range ts {
			out[i] = LensToken{Piece: e.Printable(t.ID), ID: t.ID, Value: t.Value}
		}
		return out
	}
	for k, i := range which {
		md, pc := lg[2*k*nv:(2*k+1)*nv], lg[(2*k+1)*nv:(2*k+2)*nv]
		res.Components[i].Lens = &DirLens{
			MeanDiffTop: toLens(lens.TopK(md, o.LensK)), MeanDiffBottom: toLens(lens.BottomK(md, o.LensK)),
			PC1Top: toLens(lens.TopK(pc, o.LensK)), PC1Bottom: toLens(lens.BottomK(pc, o.LensK)),
		}
	}
	return nil
}

// CvecOptions say which directions ControlVector takes.
type CvecOptions struct {
	// Method is "mean_diff" or "pca" (PC1); Norm "raw" (as measured) or
	// "unit" (mean_diff only: PC1 is a unit vector).
	Method, Norm string
	// Offset shifts the layer: resid_post.L becomes direction.(L+Offset).
	Offset int
	// ModelFile names the model in the vector's metadata.
	ModelFile string
}

// ControlVector turns the resid_post directions of r into a llama.cpp
// control vector: the vector of resid_post.L as direction.(L+Offset), for
// the layers llama.cpp can add to (1..n_layer−1). File is left empty.
func ControlVector(r *ContrastResult, nLayer int, o CvecOptions) (*contrast.ControlVector, *ContrastExport, error) {
	cv := &contrast.ControlVector{
		ModelHint: r.Arch, Directions: map[int][]float32{}, Offset: o.Offset,
		Meta: map[string]string{
			"method": o.Method, "norm": o.Norm, "hook": string(models.ResidPost),
			"model": o.ModelFile, "positions": r.Positions,
			"a": r.A.Source, "b": r.B.Source,
		},
	}
	ex := &ContrastExport{Method: o.Method, Norm: o.Norm, LayerOffset: o.Offset}
	for l := range nLayer {
		h := models.Hook{Kind: models.ResidPost, Layer: l}
		n := l + o.Offset
		if n < 1 || n >= nLayer {
			why := "llama.cpp never adds a vector to layer 0 and refuses a direction.0"
			if n >= nLayer {
				why = fmt.Sprintf("the model has no layer %d for llama.cpp to add direction.%d to", n, n)
			}
			ex.Skipped = append(ex.Skipped, fmt.Sprintf("%s: %s", h.Short(), why))
			continue
		}
		st := r.Stats[h]
		if st.Norm == 0 {
			ex.Skipped = append(ex.Skipped, fmt.Sprintf("%s: A and B do not differ there (the mean difference is zero)", h.Short()))
			continue
		}
		if contrast.Negligible(st.Norm, st.Scale) {
			// as a unit vector, rounding noise would steer as hard as a
			// real direction
			ex.Skipped = append(ex.Skipped, fmt.Sprintf("%s: A and B do not differ there (‖Δμ‖ = %.3g is float32 rounding for activations of norm %.3g)", h.Short(), st.Norm, st.Scale))
			continue
		}
		var v []float32
		switch {
		case o.Method == "pca":
			v = append([]float32(nil), st.PC.Vec...)
		case o.Norm == "unit":
			v = diff.Unit(st.MeanDiff)
		default:
			v = append([]float32(nil), st.MeanDiff...)
		}
		cv.Directions[n] = v
		ex.Directions = append(ex.Directions, CvecDir{Tensor: fmt.Sprintf("direction.%d", n), Hook: h.Name(), Norm: diff.Norm(v)})
	}
	if len(cv.Directions) == 0 {
		if nLayer > 1 {
			return nil, nil, inputErr("every resid_post direction is zero or rounding noise: A and B give the same activations at the chosen positions (--pos %s; position 0 is the same first token in every prompt), so there is nothing to steer with: choose positions where the prompts differ", cmp.Or(r.Positions, "last"))
		}
		return nil, nil, fmt.Errorf("no layer can hold a control vector: the model has %d layer(s), and llama.cpp adds vectors to layers 1..n_layer−1 only", nLayer)
	}
	return cv, ex, nil
}
