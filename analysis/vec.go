package analysis

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/models"
)

// AnyVector is the kind of the one comparison of sources that are all
// single vectors (.npy files): they are compared once, not hook by hook.
const AnyVector models.Kind = "vector"

// VecSource is one source of vectors of vec, resolved to vectors by hook;
// a single vector (All) is compared at every hook.
type VecSource struct {
	// Name is the source as given (a path or a prompt pair "A|B").
	Name string `json:"name"`
	// Kind is "vectors" (a --save-vectors directory), "cvec" (a control
	// vector), "npy" (one vector) or "pair" (a prompt pair, run by Vec).
	Kind string                    `json:"kind"`
	Vecs map[models.Hook][]float32 `json:"-"`
	All  []float32                 `json:"-"`
	// Prompts are the two prompts of a pair, with their escapes undone
	// (SplitPair).
	Prompts [2]string `json:"-"`
}

// At returns the source's vector at hook h, nil when it has none.
func (s *VecSource) At(h models.Hook) []float32 {
	if s.All != nil {
		return s.All
	}
	return s.Vecs[h]
}

// VecResult is the document `vec --json` prints.
type VecResult struct {
	Sources []VecSource `json:"sources"`
	Hooks   []VecHook   `json:"hooks"`
	Notes   []string    `json:"notes,omitempty"`
}

// VecHook compares the sources' vectors at one hook.
type VecHook struct {
	// Hook is the hook's full name, or "vector" (AnyVector) for sources
	// that are all single vectors.
	Hook  string    `json:"hook"`
	Norms []float64 `json:"norms"`
	// Cosine[i][j] is cos(v_i, v_j); Projection[i][j] is v_i·v_j/‖v_j‖.
	// Both are null where v_i (cosine) or v_j is a zero vector.
	Cosine     [][]*float64 `json:"cosine"`
	Projection [][]*float64 `json:"projection"`
}

// VecLoadOptions configure LoadVecSource.
type VecLoadOptions struct {
	// Method picks the vectors of a --save-vectors directory: "mean" (the
	// mean difference) or "pca" (PC1).
	Method string
	// CvecOffset is the layer offset of control vectors that do not record
	// theirs (0: lldiff, 1: cvector-generator; -1: none given).
	CvecOffset int
}

// SplitPair splits a prompt pair "A|B" at its one unescaped bar and
// undoes the escapes: \| is a bar that belongs to the text and \\ a
// backslash; any other backslash is kept as it is. ok is false when arg
// has no unescaped bar (it is not a pair); a second unescaped bar is an
// *InputError, since it would leave open which bar separates the prompts.
func SplitPair(arg string) (a, b string, ok bool, err error) {
	var side [2]strings.Builder
	bars := 0
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		switch {
		case c == '\\' && i+1 < len(arg) && (arg[i+1] == '|' || arg[i+1] == '\\'):
			i++
			side[min(bars, 1)].WriteByte(arg[i])
		case c == '|':
			bars++
			if bars > 1 {
				return "", "", false, inputErr("prompt pair %q has more than one |: write a bar that belongs to a prompt as \\| (and a backslash as \\\\), e.g. 'x \\| y|z' is the pair \"x | y\" and \"z\"", arg)
			}
		default:
			side[min(bars, 1)].WriteByte(c)
		}
	}
	if bars == 0 {
		return "", "", false, nil
	}
	return side[0].String(), side[1].String(), true, nil
}

// LoadVecSource resolves one argument of vec: an existing directory (a
// --save-vectors directory), .npy file or control vector is read; any
// other argument must be a prompt pair "A|B", returned with no vectors for
// Vec to run.
func LoadVecSource(arg string, o VecLoadOptions) (*VecSource, error) {
	st, statErr := os.Stat(arg)
	if statErr != nil {
		a, b, ok, err := SplitPair(arg)
		if err != nil {
			return nil, err
		}
		if ok {
			if strings.TrimSpace(a) == "" || strings.TrimSpace(b) == "" {
				return nil, inputErr("prompt pair %q: both sides of | need text", arg)
			}
			return &VecSource{Name: arg, Kind: "pair", Vecs: map[models.Hook][]float32{}, Prompts: [2]string{a, b}}, nil
		}
		return nil, inputErr("%s: no such file or directory, and not a prompt pair \"A|B\"", arg)
	}
	switch {
	case st.IsDir():
		return LoadVectorDir(arg, o.Method)
	case strings.EqualFold(filepath.Ext(arg), ".npy"):
		v, err := ReadNpyVector(arg)
		if err != nil {
			return nil, err
		}
		return &VecSource{Name: arg, Kind: "npy", Vecs: map[models.Hook][]float32{}, All: v}, nil
	}
	src := &VecSource{Name: arg, Kind: "cvec", Vecs: map[models.Hook][]float32{}}
	cv, err := contrast.ReadControlVector(arg)
	if err != nil {
		return nil, err
	}
	off := cv.Offset
	if off < 0 {
		off = o.CvecOffset
	}
	if off < 0 {
		return nil, inputErr("%s does not record its layer offset (it was not written by lldiff): pass --cvec-layer-offset 0 if direction.N was measured at resid_post.N, or 1 for cvector-generator's files", arg)
	}
	for _, l := range cv.Layers() {
		src.Vecs[models.Hook{Kind: models.ResidPost, Layer: l - off}] = cv.Directions[l]
	}
	return src, nil
}

// maxIndexJSON bounds the index.json read: thousands of times what a
// --save-vectors directory of the largest model writes.
const maxIndexJSON = 64 << 20

// LoadVectorDir reads the vectors of a --save-vectors directory that
// method ("mean" or "pca") picks. It reads only files inside dir: a file
// that index.json names by an absolute path, with a .. component, or
// through a link that leads out of dir is refused, and so is a file whose
// size or shape is not what index.json records (the directory is
// incomplete or was changed after it was written).
func LoadVectorDir(dir, method string) (*VecSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: not a --save-vectors directory: %w", dir, err)
	}
	defer root.Close()
	f, _, err := openInside(root, dir, "index.json")
	if err != nil {
		return nil, fmt.Errorf("%s: not a --save-vectors directory: %w", dir, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIndexJSON+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s/index.json: %w", dir, err)
	}
	if len(b) > maxIndexJSON {
		return nil, fmt.Errorf("%s/index.json is larger than %d MiB: not an index lldiff wrote", dir, maxIndexJSON>>20)
	}
	var idx VectorIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s/index.json: %w", dir, err)
	}
	want := "mean_diff"
	if method == "pca" {
		want = "pc1"
	}
	src := &VecSource{Name: dir, Kind: "vectors", Vecs: map[models.Hook][]float32{}}
	for _, vf := range idx.Files {
		if vf.Method != want {
			continue
		}
		hs, err := models.ParseHook(vf.Hook, vf.Layer+1)
		if err != nil || len(hs) != 1 {
			return nil, fmt.Errorf("%s/index.json: bad hook %q", dir, vf.Hook)
		}
		v, err := readIndexedVector(root, dir, vf)
		if err != nil {
			return nil, err
		}
		src.Vecs[hs[0]] = v
	}
	if len(src.Vecs) == 0 {
		return nil, fmt.Errorf("%s holds no %s vectors", dir, want)
	}
	return src, nil
}

// readIndexedVector reads the vector index.json describes as vf, checking
// its size and shape against the index when it records a shape.
func readIndexedVector(root *os.Root, dir string, vf VectorFile) ([]float32, error) {
	f, st, err := openInside(root, dir, vf.File)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	path := filepath.Join(dir, vf.File)
	modified := func(format string, a ...any) error {
		return fmt.Errorf("%s looks incomplete or was modified after it was written: %s", dir, fmt.Sprintf(format, a...))
	}
	if len(vf.Shape) > 0 {
		if size := npy.FileSize(vf.Shape); st.Size() != size {
			return nil, modified("%s has %d bytes, index.json records shape %v (%d bytes)", path, st.Size(), vf.Shape, size)
		}
	}
	shape, v, err := readNpy(f, path)
	if err != nil {
		return nil, err
	}
	if len(vf.Shape) > 0 && !slices.Equal(shape, vf.Shape) {
		return nil, modified("%s has shape %v, index.json records %v", path, shape, vf.Shape)
	}
	return v, nil
}

// openInside opens name, a path read from a file in dir, for reading
// through root: a relative path without .. components that resolves,
// links followed, to a regular file inside dir. Errors name the path as
// dir/name.
func openInside(root *os.Root, dir, name string) (*os.File, os.FileInfo, error) {
	path := filepath.Join(dir, name)
	outside := func(why string) error {
		return fmt.Errorf("%s/index.json names %q, %s: vec reads only the files inside the directory", dir, name, why)
	}
	parts := strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' })
	switch {
	case name == "":
		return nil, nil, fmt.Errorf("%s/index.json names a file with no name", dir)
	case filepath.IsAbs(name) || strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`):
		return nil, nil, outside("an absolute path")
	case slices.Contains(parts, "..") || !filepath.IsLocal(name):
		return nil, nil, outside("a path out of the directory (a .. component)")
	}
	// os.Root refuses links out of dir; resolve them first to say so
	if real, err := filepath.EvalSymlinks(path); err == nil {
		top, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil, nil, err
		}
		if rel, err := filepath.Rel(top, real); err != nil || !filepath.IsLocal(rel) {
			return nil, nil, outside(fmt.Sprintf("a link to %s, outside the directory", real))
		}
	}
	named := func(err error) error {
		var pe *os.PathError
		if errors.As(err, &pe) {
			pe.Path = path
		}
		return err
	}
	// a regular file before opening it: opening a FIFO would wait for a
	// writer
	if st, err := root.Stat(name); err != nil {
		return nil, nil, named(err)
	} else if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, named(err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// ReadNpyVector reads one vector, of shape [d] or [1, d] and finite
// values, from a .npy file.
func ReadNpyVector(path string) ([]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, v, err := readNpy(f, path)
	return v, err
}

// readNpy reads a vector from r, the .npy file at path, and returns its
// shape too.
func readNpy(r io.Reader, path string) ([]int, []float32, error) {
	shape, data, err := npy.Read(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(shape) != 1 && !(len(shape) == 2 && shape[0] == 1) {
		return nil, nil, fmt.Errorf("%s has shape %v: a vector is [d] or [1, d]", path, shape)
	}
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%s holds an empty vector: a vector has d_model values", path)
	}
	for i, x := range data {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, nil, fmt.Errorf("%s: value %d is %v (NaN or infinite): a vector must hold finite numbers", path, i, x)
		}
	}
	return shape, data, nil
}

// VecOptions configure Vec.
type VecOptions struct {
	// Sources are the sources compared, from LoadVecSource; Vec fills in
	// the vectors of prompt pairs.
	Sources []*VecSource
	// Hooks narrows the comparison to these hooks (models.ParseHooks
	// notation, resolved against the sources' layers; "" is every hook all
	// sources have). Prompt pairs are run at these hooks, resid_post at
	// every layer when "".
	Hooks string
	// Pos is the position of prompt pairs: one index, negative from the
	// end.
	Pos RowSpec
	// Tokenize configures the tokenization of prompt pairs.
	Tokenize models.TokenizeOptions
}

// Vec runs the prompt pairs among o.Sources on e (which may be nil when
// there are none) and compares the sources' vectors hook by hook: norms,
// cosines and projections.
func Vec(e models.Engine, o VecOptions) (*VecResult, error) {
	sources := o.Sources
	var pairs []int // indices of prompt-pair sources
	for i, s := range sources {
		if s.Kind == "pair" {
			pairs = append(pairs, i)
		}
	}
	if len(pairs) > 0 {
		if e == nil {
			return nil, inputErr("prompt pairs such as %q need a model", sources[pairs[0]].Name)
		}
		if err := runPairs(e, o, pairs); err != nil {
			return nil, err
		}
	}
	var filter []models.Hook
	if o.Hooks != "" {
		hs, err := models.ParseHooks(o.Hooks, maxLayer(sources)+1)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		filter = hs
	}
	hooks := commonHooks(sources, filter)
	if len(hooks) == 0 {
		var lists []string
		for _, s := range sources {
			var hs []string
			for h := range s.Vecs {
				hs = append(hs, h.Short())
			}
			slices.Sort(hs)
			lists = append(lists, fmt.Sprintf("%s: %s", s.Name, strings.Join(hs, " ")))
		}
		among := ""
		if o.Hooks != "" {
			among = " among --hooks"
		}
		return nil, inputErr("the sources share no hook%s (%s)", among, strings.Join(lists, "; "))
	}
	r := &VecResult{}
	for _, s := range sources {
		r.Sources = append(r.Sources, *s)
	}
	for _, h := range hooks {
		at := ""
		if h.Kind != AnyVector {
			at = " at " + h.Short()
		}
		vs := make([][]float32, len(sources))
		for i, s := range sources {
			vs[i] = s.At(h)
			if len(vs[i]) != len(vs[0]) {
				return nil, fmt.Errorf("%s has %d values%s and %s %d: vectors of models of different width cannot be compared; give vectors of one model", s.Name, len(vs[i]), at, sources[0].Name, len(vs[0]))
			}
		}
		r.Hooks = append(r.Hooks, compareVectors(h, vs))
		for i, n := range r.Hooks[len(r.Hooks)-1].Norms {
			if n == 0 {
				r.Notes = append(r.Notes, fmt.Sprintf("%s is a zero vector%s: it has no direction, so its cosines are undefined (–)", sources[i].Name, at))
			}
		}
	}
	return r, nil
}

// compareVectors returns the norms, cosines and projections of vs at h.
func compareVectors(h models.Hook, vs [][]float32) VecHook {
	hj := VecHook{Hook: h.Name()}
	if h.Kind == AnyVector {
		hj.Hook = string(AnyVector)
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
	return hj
}

func maxLayer(sources []*VecSource) int {
	m := 0
	for _, s := range sources {
		for h := range s.Vecs {
			m = max(m, h.Layer)
		}
	}
	return m
}

// commonHooks returns the hooks every source has (single vectors match
// any), within filter when given, in model order.
func commonHooks(sources []*VecSource, filter []models.Hook) []models.Hook {
	var cand []models.Hook
	for _, s := range sources {
		if s.All == nil {
			for h := range s.Vecs {
				cand = append(cand, h)
			}
			break
		}
	}
	if cand == nil {
		cand = filter
		if cand == nil {
			cand = []models.Hook{{Kind: AnyVector, Layer: -1}}
		}
	}
	var out []models.Hook
	for _, h := range cand {
		if filter != nil && !slices.Contains(filter, h) {
			continue
		}
		ok := true
		for _, s := range sources {
			if s.At(h) == nil {
				ok = false
			}
		}
		if ok {
			out = append(out, h)
		}
	}
	return models.SortHooks(out)
}

// runPairs runs the prompt pairs sources[pairs[k]] on e and stores
// activation(A) − activation(B) at each hook.
func runPairs(e models.Engine, o VecOptions, pairs []int) error {
	sources := o.Sources
	spec := o.Hooks
	if spec == "" {
		spec = string(models.ResidPost)
	}
	hooks, err := models.ParseHooks(spec, e.ModelInfo().NLayer)
	if err != nil {
		return &InputError{Err: err}
	}
	for _, h := range hooks {
		if err := e.HookTable().Check(h.Kind); err != nil {
			return &InputError{Err: err}
		}
	}
	rs := o.Pos
	if rs.All || len(rs.Indices) != 1 {
		return inputErr("--pos for prompt pairs takes one position (last, or an index such as -2)")
	}
	var seqs [][]int32
	for _, i := range pairs {
		for _, text := range sources[i].Prompts {
			ids, err := e.Tokenize(text, o.Tokenize)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return inputErr("%q gives no tokens", text)
			}
			seqs = append(seqs, ids)
		}
	}
	run, err := e.NewRunner(seqs, min(len(seqs), 16))
	if err != nil {
		return err
	}
	defer run.Close()
	caches, err := run.Run(seqs, hooks)
	if err != nil {
		return err
	}
	for k, i := range pairs {
		ca, cb := caches[2*k], caches[2*k+1]
		ra, err := rs.Resolve(len(ca.Tokens))
		if err != nil {
			return inputErr("%q: %v", sources[i].Name, err)
		}
		rb, err := rs.Resolve(len(cb.Tokens))
		if err != nil {
			return inputErr("%q: %v", sources[i].Name, err)
		}
		for _, h := range hooks {
			aa, _ := ca.At(h)
			ab, _ := cb.At(h)
			sources[i].Vecs[h] = diff.SubTo(make([]float32, aa.Width), aa.Row(ra[0]), ab.Row(rb[0]))
		}
	}
	return nil
}
