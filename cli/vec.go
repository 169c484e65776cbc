package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

func init() {
	extraCommands = append(extraCommands, func(io *IOStreams) *cobra.Command { return newCmdVec(io, nil) })
}

// VecOptions are the options of `lldiff vec`.
type VecOptions struct {
	IO         *IOStreams
	Model      modelFlags
	Sources    []string
	Hooks      string
	Pos        string
	Method     string
	CvecOffset int
	JSON       bool
}

func newCmdVec(io *IOStreams, runF func(*VecOptions) error) *cobra.Command {
	opts := &VecOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "vec [-m MODEL] SOURCE SOURCE...",
		Short: "Cosine similarities, norms and projections between difference vectors",
		Long: `Compare directions hook by hook: their norms, the cosine-similarity matrix,
and projections (row i, column j: v_i · v_j/‖v_j‖, how far v_i reaches
along v_j).

A SOURCE is one of:
  DIR          a --save-vectors directory of lldiff contrast (index.json);
               --method picks mean (the mean difference) or pca (PC1)
  FILE.gguf    a llama.cpp control vector: direction.N is taken as
               resid_post.(N − offset), the offset read from the file
               (lldiff writes it) or given with --cvec-layer-offset
  FILE.npy     one vector, compared at every hook
  "A|B"        a prompt pair, run with -m: activation(A) − activation(B)
               at --pos (default: each prompt's last token), e.g.
               "father|mother" "king|queen"

Hooks present in every source are compared; --hooks narrows them.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Sources = args
			switch opts.Method {
			case "mean", "pca":
			default:
				return usageErr("--method %q: use mean or pca", opts.Method)
			}
			if opts.CvecOffset < -1 || opts.CvecOffset > 1 {
				return usageErr("--cvec-layer-offset takes 0 or 1")
			}
			if _, err := analysis.ParseRowSpec(opts.Pos); err != nil {
				return &UsageError{Err: err}
			}
			if runF != nil {
				return runF(opts)
			}
			return vecRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Hooks, "hooks", "", "hooks to compare (default: every hook all sources have; prompt pairs: resid_post)")
	f.StringVar(&opts.Pos, "pos", "last", "position of prompt pairs: last or an index such as -2")
	f.StringVar(&opts.Method, "method", "mean", "which vector of a --save-vectors directory: mean or pca")
	f.IntVar(&opts.CvecOffset, "cvec-layer-offset", -1, "layer offset of control vectors that do not record theirs (0: lldiff, 1: cvector-generator)")
	f.BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// anyVector names the one comparison of sources that are all single
// vectors (.npy files).
const anyVector models.Kind = "vector"

// vecSource is one argument of vec, resolved to vectors by hook; a single
// vector (all) is compared at every hook.
type vecSource struct {
	Name string                    `json:"name"`
	Kind string                    `json:"kind"`
	vecs map[models.Hook][]float32 `json:"-"`
	all  []float32                 `json:"-"`
}

// VecJSON is the document `vec --json` prints.
type VecJSON struct {
	Sources []vecSource   `json:"sources"`
	Hooks   []vecHookJSON `json:"hooks"`
	Notes   []string      `json:"notes,omitempty"`
}

type vecHookJSON struct {
	Hook  string    `json:"hook"`
	Norms []float64 `json:"norms"`
	// Cosine[i][j] is cos(v_i, v_j); Projection[i][j] is v_i·v_j/‖v_j‖.
	// Both are null where v_i (cosine) or v_j is a zero vector.
	Cosine     [][]*float64 `json:"cosine"`
	Projection [][]*float64 `json:"projection"`
}

func vecRun(opts *VecOptions) error {
	var sources []*vecSource
	var pairs []int // indices of prompt-pair sources
	for _, arg := range opts.Sources {
		src, err := loadVecSource(opts, arg)
		if err != nil {
			return err
		}
		if src.Kind == "pair" {
			pairs = append(pairs, len(sources))
		}
		sources = append(sources, src)
	}
	if len(pairs) > 0 {
		if err := runPairSources(opts, sources, pairs); err != nil {
			return err
		}
	}
	var filter []models.Hook
	if opts.Hooks != "" {
		hs, err := models.ParseHooks(opts.Hooks, maxLayer(sources)+1)
		if err != nil {
			return &UsageError{Err: err}
		}
		filter = hs
	}
	hooks := commonHooks(sources, filter)
	if len(hooks) == 0 {
		var lists []string
		for _, s := range sources {
			var hs []string
			for h := range s.vecs {
				hs = append(hs, h.Short())
			}
			slices.Sort(hs)
			lists = append(lists, fmt.Sprintf("%s: %s", s.Name, strings.Join(hs, " ")))
		}
		return usageErr("the sources share no hook%s (%s)", map[bool]string{true: " among --hooks", false: ""}[opts.Hooks != ""], strings.Join(lists, "; "))
	}
	doc := VecJSON{}
	for _, s := range sources {
		doc.Sources = append(doc.Sources, *s)
	}
	for _, h := range hooks {
		vs := make([][]float32, len(sources))
		for i, s := range sources {
			vs[i] = s.at(h)
			if len(vs[i]) != len(vs[0]) {
				at := ""
				if h.Kind != anyVector {
					at = " at " + h.Short()
				}
				return fmt.Errorf("%s has %d values%s and %s %d: vectors of models of different width cannot be compared; give vectors of one model", s.Name, len(vs[i]), at, sources[0].Name, len(vs[0]))
			}
		}
		hj := vecHookJSON{Hook: h.Name()}
		if h.Kind == anyVector {
			hj.Hook = string(anyVector)
		}
		for i := range vs {
			hj.Norms = append(hj.Norms, diff.Norm(vs[i]))
		}
		for i := range vs {
			var cos, proj []*float64
			for j := range vs {
				// a zero vector has no direction: its cosines, and
				// projections onto it, are undefined (null)
				var c, p *float64
				if hj.Norms[i] > 0 && hj.Norms[j] > 0 {
					cv := diff.Cosine(vs[i], vs[j])
					pv := cv * hj.Norms[i]
					c, p = &cv, &pv
				} else if hj.Norms[j] > 0 {
					zero := 0.0
					p = &zero
				}
				cos, proj = append(cos, c), append(proj, p)
			}
			hj.Cosine, hj.Projection = append(hj.Cosine, cos), append(hj.Projection, proj)
		}
		for i, n := range hj.Norms {
			if n == 0 {
				at := ""
				if h.Kind != anyVector {
					at = " at " + h.Short()
				}
				doc.Notes = append(doc.Notes, fmt.Sprintf("%s is a zero vector%s: it has no direction, so its cosines are undefined (–)", sources[i].Name, at))
			}
		}
		doc.Hooks = append(doc.Hooks, hj)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	return printVec(opts.IO, &doc)
}

func (s *vecSource) at(h models.Hook) []float32 {
	if s.all != nil {
		return s.all
	}
	return s.vecs[h]
}

func maxLayer(sources []*vecSource) int {
	m := 0
	for _, s := range sources {
		for h := range s.vecs {
			m = max(m, h.Layer)
		}
	}
	return m
}

// commonHooks returns the hooks every source has (single vectors match
// any), within filter when given, in model order.
func commonHooks(sources []*vecSource, filter []models.Hook) []models.Hook {
	var cand []models.Hook
	for _, s := range sources {
		if s.all == nil {
			for h := range s.vecs {
				cand = append(cand, h)
			}
			break
		}
	}
	if cand == nil {
		cand = filter
		if cand == nil {
			cand = []models.Hook{{Kind: anyVector, Layer: -1}}
		}
	}
	var out []models.Hook
	for _, h := range cand {
		if filter != nil && !slices.Contains(filter, h) {
			continue
		}
		ok := true
		for _, s := range sources {
			if s.at(h) == nil {
				ok = false
			}
		}
		if ok {
			out = append(out, h)
		}
	}
	return models.SortHooks(out)
}

func loadVecSource(opts *VecOptions, arg string) (*vecSource, error) {
	st, statErr := os.Stat(arg)
	if statErr != nil {
		if a, b, ok := strings.Cut(arg, "|"); ok {
			if strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
				return nil, usageErr("prompt pair %q: both sides of | need text", arg)
			}
			return &vecSource{Name: arg, Kind: "pair", vecs: map[models.Hook][]float32{}}, nil
		}
		return nil, usageErr("%s: no such file or directory, and not a prompt pair \"A|B\"", arg)
	}
	src := &vecSource{Name: arg, vecs: map[models.Hook][]float32{}}
	switch {
	case st.IsDir():
		src.Kind = "vectors"
		b, err := os.ReadFile(filepath.Join(arg, "index.json"))
		if err != nil {
			return nil, fmt.Errorf("%s: not a --save-vectors directory: %w", arg, err)
		}
		var idx analysis.VectorIndex
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("%s/index.json: %w", arg, err)
		}
		want := "mean_diff"
		if opts.Method == "pca" {
			want = "pc1"
		}
		for _, f := range idx.Files {
			if f.Method != want {
				continue
			}
			hs, err := models.ParseHook(f.Hook, f.Layer+1)
			if err != nil || len(hs) != 1 {
				return nil, fmt.Errorf("%s/index.json: bad hook %q", arg, f.Hook)
			}
			v, err := readNpyVector(filepath.Join(arg, f.File))
			if err != nil {
				return nil, err
			}
			src.vecs[hs[0]] = v
		}
		if len(src.vecs) == 0 {
			return nil, fmt.Errorf("%s holds no %s vectors", arg, want)
		}
	case strings.EqualFold(filepath.Ext(arg), ".npy"):
		src.Kind = "npy"
		v, err := readNpyVector(arg)
		if err != nil {
			return nil, err
		}
		src.all = v
	default:
		src.Kind = "cvec"
		cv, err := contrast.ReadControlVector(arg)
		if err != nil {
			return nil, err
		}
		off := cv.Offset
		if off < 0 {
			off = opts.CvecOffset
		}
		if off < 0 {
			return nil, usageErr("%s does not record its layer offset (it was not written by lldiff): pass --cvec-layer-offset 0 if direction.N was measured at resid_post.N, or 1 for cvector-generator's files", arg)
		}
		for _, l := range cv.Layers() {
			src.vecs[models.Hook{Kind: models.ResidPost, Layer: l - off}] = cv.Directions[l]
		}
	}
	return src, nil
}

func readNpyVector(path string) ([]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	shape, data, err := npy.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(shape) != 1 && !(len(shape) == 2 && shape[0] == 1) {
		return nil, fmt.Errorf("%s has shape %v: a vector is [d] or [1, d]", path, shape)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s holds an empty vector: a vector has d_model values", path)
	}
	for i, x := range data {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%s: value %d is %v (NaN or infinite): a vector must hold finite numbers", path, i, x)
		}
	}
	return data, nil
}

// runPairSources runs every prompt pair through the model and stores
// activation(A) − activation(B) at each hook.
func runPairSources(opts *VecOptions, sources []*vecSource, pairs []int) error {
	if err := opts.Model.check(); err != nil {
		return usageErr("prompt pairs such as %q need a model: %v", sources[pairs[0]].Name, err)
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	spec := opts.Hooks
	if spec == "" {
		spec = string(models.ResidPost)
	}
	hooks, err := models.ParseHooks(spec, m.NLayer())
	if err != nil {
		return &UsageError{Err: err}
	}
	for _, h := range hooks {
		if err := m.Hooks.Check(h.Kind); err != nil {
			return &UsageError{Err: err}
		}
	}
	rs, _ := analysis.ParseRowSpec(opts.Pos)
	if rs.All || len(rs.Indices) != 1 {
		return usageErr("--pos for prompt pairs takes one position (last, or an index such as -2)")
	}
	var seqs [][]int32
	for _, i := range pairs {
		a, b, _ := strings.Cut(sources[i].Name, "|")
		for _, text := range []string{a, b} {
			ids, err := m.Tokenize(text, opts.Model.tokenizeOptions())
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return usageErr("%q gives no tokens", text)
			}
			seqs = append(seqs, ids)
		}
	}
	nSeq := min(len(seqs), 16)
	ctx, err := opts.Model.context(m, seqs, nSeq)
	if err != nil {
		return err
	}
	defer ctx.Close()
	caches, err := ctx.Run(seqs, llamacpp.RunOptions{Hooks: hooks})
	if err != nil {
		return err
	}
	for k, i := range pairs {
		ca, cb := caches[2*k], caches[2*k+1]
		ra, err := rs.Resolve(len(ca.Tokens))
		if err != nil {
			return usageErr("%q: %v", sources[i].Name, err)
		}
		rb, err := rs.Resolve(len(cb.Tokens))
		if err != nil {
			return usageErr("%q: %v", sources[i].Name, err)
		}
		for _, h := range hooks {
			aa, _ := ca.At(h)
			ab, _ := cb.At(h)
			sources[i].vecs[h] = diff.SubTo(make([]float32, aa.Width), aa.Row(ra[0]), ab.Row(rb[0]))
		}
	}
	return nil
}

func printVec(io *IOStreams, doc *VecJSON) error {
	out := io.Out
	for i, s := range doc.Sources {
		fmt.Fprintf(out, "[%d] %s (%s)\n", i+1, s.Name, s.Kind)
	}
	if len(doc.Sources) == 2 {
		fmt.Fprintln(out)
		var rows [][]string
		for _, h := range doc.Hooks {
			rows = append(rows, []string{shortHook(h.Hook), fmt.Sprintf("%.4g", h.Norms[0]), fmt.Sprintf("%.4g", h.Norms[1]),
				orDash(h.Cosine[0][1], "%.4f"), orDash(h.Projection[0][1], "%.4g"), orDash(h.Projection[1][0], "%.4g")})
		}
		if err := table(io, []string{"hook", "‖[1]‖", "‖[2]‖", "cos", "[1]·û[2]", "[2]·û[1]"}, rows); err != nil {
			return err
		}
		printNotes(out, doc.Notes)
		return nil
	}
	for _, h := range doc.Hooks {
		fmt.Fprintf(out, "\n== %s: cosine (norm in the last column) ==\n", shortHook(h.Hook))
		header := []string{""}
		for j := range doc.Sources {
			header = append(header, fmt.Sprintf("[%d]", j+1))
		}
		header = append(header, "norm")
		var rows [][]string
		for i := range doc.Sources {
			r := []string{fmt.Sprintf("[%d]", i+1)}
			for j := range doc.Sources {
				r = append(r, orDash(h.Cosine[i][j], "%.3f"))
			}
			rows = append(rows, append(r, fmt.Sprintf("%.4g", h.Norms[i])))
		}
		if err := table(io, header, rows); err != nil {
			return err
		}
	}
	printNotes(out, doc.Notes)
	return nil
}

func orDash(p *float64, format string) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf(format, *p)
}

func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func shortHook(name string) string {
	if hs, err := models.ParseHook(name, 1<<20); err == nil && len(hs) == 1 {
		return hs[0].Short()
	}
	return name
}
