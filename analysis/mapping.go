package analysis

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/models"
)

// This file is `lldiff map`: many concepts in one picture. Each line of a
// prompt file becomes one vector at one or several hooks (the last
// token's, or the mean over the tokens of a marked word); the vectors are
// compared (cosines ordered by hierarchical clustering), projected to two
// dimensions (PCA) and clustered (k-means, k by silhouette); analogies
// and differences of differences are answered from the same vectors.
// The numerics are in mapping_math.go.

// MapItem is one line of a map prompt file.
type MapItem struct {
	Label string `json:"label"`
	Text  string `json:"text"`
	// Span is the marked word's byte range in Text, [-1, -1] when the line
	// marks none.
	Span [2]int `json:"span"`
}

// Markers around the word whose tokens --span averages: "The [[cat]] sat".
const (
	SpanOpen  = "[["
	SpanClose = "]]"
)

// ParseMapItems reads a map prompt file: one prompt per line, as
// "label<TAB>text" or text alone (the label is then the text); empty lines
// and lines starting with # are skipped. A word marked [[like this]] is
// the span --span averages; the brackets are not part of the prompt.
func ParseMapItems(data string) ([]MapItem, error) {
	data = strings.TrimPrefix(data, "\ufeff")
	var items []MapItem
	for n, line := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		label, text, ok := strings.Cut(line, "\t")
		if !ok {
			text, label = line, ""
		}
		if strings.Contains(text, "\t") {
			return nil, inputErr("line %d has more than one tab: write label<TAB>text", n+1)
		}
		it := MapItem{Span: [2]int{-1, -1}}
		i := strings.Index(text, SpanOpen)
		if i >= 0 {
			j := strings.Index(text[i+len(SpanOpen):], SpanClose)
			if j < 0 {
				return nil, inputErr("line %d: %s without %s: mark a word as [[word]]", n+1, SpanOpen, SpanClose)
			}
			word := text[i+len(SpanOpen) : i+len(SpanOpen)+j]
			rest := text[i+len(SpanOpen)+j+len(SpanClose):]
			if word == "" || strings.Contains(rest, SpanOpen) || strings.Contains(word, SpanOpen) {
				return nil, inputErr("line %d: mark one non-empty word or phrase per line as [[word]]", n+1)
			}
			text = text[:i] + word + rest
			it.Span = [2]int{i, i + len(word)}
		} else if strings.Contains(text, SpanClose) {
			return nil, inputErr("line %d: %s without %s: mark a word as [[word]]", n+1, SpanClose, SpanOpen)
		}
		if strings.TrimSpace(text) == "" {
			return nil, inputErr("line %d has a label but no text", n+1)
		}
		it.Text = text
		it.Label = strings.TrimSpace(label)
		if it.Label == "" {
			it.Label = strings.TrimSpace(text)
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return nil, inputErr("the prompt file has no prompts: write one per line, as label<TAB>text or text")
	}
	return items, nil
}

// MapOptions configure Map.
type MapOptions struct {
	Model string
	Items []MapItem
	// Hooks are the hooks mapped (models.ParseHooks notation).
	Hooks string
	// Span averages the tokens of each line's marked word instead of
	// taking the last token; every line must mark one.
	Span     bool
	Tokenize models.TokenizeOptions
	// MaxK is the largest cluster count tried (default 8).
	MaxK int
	// Analogies are "a:b::c:?" queries over the labels; Diffs are pairs
	// "x|y" (labels, or prompts run for the purpose) whose difference
	// vectors are compared at every layer.
	Analogies []string
	Diffs     []string
	// Nearest is the answers listed per analogy (default 5).
	Nearest int
}

// MapResult is the document `map --json` prints (docs/geometry.md).
type MapResult struct {
	Model    string       `json:"model"`
	Items    []MapItem    `json:"items"`
	Vector   string       `json:"vector"` // "last token" or "span mean"
	Hooks    []MapHook    `json:"hooks"`
	Diffs    *DiffsResult `json:"diffs,omitempty"`
	Warnings []string     `json:"warnings"`
}

// MapHook is the map of the items' vectors at one hook.
type MapHook struct {
	Hook  string    `json:"hook"`
	Norms []float64 `json:"norms"`
	// Cosine[i][j] is cos(v_i, v_j); Order lists the items in the leaf
	// order of average-linkage clustering on 1 − cos.
	Cosine [][]float64 `json:"cosine"`
	Order  []int       `json:"order"`
	// Merges are the clustering's steps: clusters A and B (an item i is
	// i, the cluster made at step s is n + s) joined at distance Dist.
	Merges []Merge `json:"merges"`
	// PCA: every item's coordinates on the first two principal axes of the
	// centred vectors, and the fraction of the variance each axis holds.
	PCA       [][2]float64 `json:"pca"`
	Explained [2]float64   `json:"explained_variance"`
	// Clusters is each item's k-means cluster (k chosen by the largest
	// mean silhouette, vectors scaled to unit length); Silhouettes the
	// mean silhouette of each k tried.
	K           int             `json:"k"`
	Clusters    []int           `json:"clusters"`
	Silhouettes map[int]float64 `json:"silhouettes"`
	Analogies   []AnalogyResult `json:"analogies,omitempty"`
}

// Merge is one step of hierarchical clustering.
type Merge struct {
	A    int     `json:"a"`
	B    int     `json:"b"`
	Dist float64 `json:"dist"`
}

// AnalogyResult answers "a:b::c:?" with the items nearest to b − a + c.
type AnalogyResult struct {
	Query   string       `json:"query"`
	Nearest []AnalogyHit `json:"nearest"`
}

// AnalogyHit is one answer.
type AnalogyHit struct {
	Label  string  `json:"label"`
	Cosine float64 `json:"cosine"`
}

// DiffsResult compares difference vectors x − y at every layer.
type DiffsResult struct {
	Hook   string       `json:"hook_kind"`
	Pairs  []string     `json:"pairs"`
	Layers []DiffsLayer `json:"layers"`
}

// DiffsLayer holds, at one layer, the norms of the differences and, for
// every two of them i < j, their cosine and the distance between them.
type DiffsLayer struct {
	Layer int         `json:"layer"`
	Norms []float64   `json:"norms"`
	Pairs []DiffsPair `json:"pairs"`
}

// DiffsPair compares differences I and J.
type DiffsPair struct {
	I        int     `json:"i"`
	J        int     `json:"j"`
	Cosine   float64 `json:"cosine"`
	Distance float64 `json:"distance"`
}

// spanTokens returns the positions of the tokens of ids that cover bytes
// [s, e) of text, by laying the tokens' pieces end to end. Control tokens
// (BOS) cover nothing. It fails when the pieces do not spell the text
// (a tokenizer that normalizes it), since the span could not be placed.
func spanTokens(v models.Vocab, ids []int32, text string, s, e int) ([]int, error) {
	var b strings.Builder
	start := make([]int, len(ids)+1)
	for i, id := range ids {
		start[i] = b.Len()
		if v.Kind(id) != models.KindControl {
			b.Write(v.Piece(id))
		}
	}
	start[len(ids)] = b.Len()
	dec := b.String()
	shift := len(dec) - len(text)
	if shift < 0 || dec[shift:] != text || strings.TrimSpace(dec[:shift]) != "" {
		return nil, fmt.Errorf("the tokens of %q do not spell the text (the tokenizer changes it), so the marked word cannot be placed", text)
	}
	var pos []int
	for i := range ids {
		a, z := start[i]-shift, start[i+1]-shift
		if z > s && a < e && z > a {
			pos = append(pos, i)
		}
	}
	if len(pos) == 0 {
		return nil, fmt.Errorf("no token of %q covers the marked word", text)
	}
	return pos, nil
}

// Map runs every item on e and maps their vectors at o.Hooks.
func Map(e models.Engine, o MapOptions) (*MapResult, error) {
	info := e.ModelInfo()
	if o.Hooks == "" {
		o.Hooks = fmt.Sprintf("resid_post.%d", info.NLayer-1)
	}
	hooks, err := models.ParseHooks(o.Hooks, info.NLayer)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	for _, h := range hooks {
		if err := e.HookTable().Check(h.Kind); err != nil {
			return nil, &InputError{Err: err}
		}
		if h.Kind == models.Logits || h.Kind == models.Z {
			return nil, inputErr("map compares residual-stream vectors; %s is not one (use resid_post, resid_mid, attn_out, mlp_out or ln_final)", h.Short())
		}
	}
	if len(o.Items) < 2 && len(o.Diffs) == 0 {
		return nil, inputErr("map needs at least two prompts")
	}
	r := &MapResult{Model: o.Model, Items: o.Items, Vector: "last token", Warnings: []string{}}
	if o.Span {
		r.Vector = "span mean"
	}
	texts := make([]string, len(o.Items))
	for i, it := range o.Items {
		texts[i] = it.Text
	}
	// the diffs' names that are no label are prompts of their own
	labels := map[string]int{}
	dups := map[string]int{}
	for i, it := range o.Items {
		if j, dup := labels[it.Label]; dup {
			if dups[it.Label] == 0 {
				r.Warnings = append(r.Warnings, fmt.Sprintf("label %q is used more than once: analogies and --diffs use its first line (%d)", it.Label, j+1))
			}
			dups[it.Label]++
			continue
		}
		labels[it.Label] = i
	}
	type diffPair struct{ x, y int } // indices into texts
	var dps []diffPair
	for _, d := range o.Diffs {
		a, b, ok, err := SplitPair(d)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, inputErr("--diffs %q: give two concepts as \"x|y\" (labels of the prompt file, or prompts)", d)
		}
		idx := func(s string) int {
			if i, ok := labels[s]; ok {
				return i
			}
			texts = append(texts, s)
			labels[s] = len(texts) - 1
			return len(texts) - 1
		}
		dps = append(dps, diffPair{idx(a), idx(b)})
	}
	if len(dps) == 1 {
		return nil, inputErr("--diffs compares difference vectors: give at least two, such as --diffs \"animal|cat\" --diffs \"animal|dog\"")
	}
	ids, err := TokenizePrompts(e, o.Tokenize, texts...)
	if err != nil {
		return nil, err
	}
	// positions: the span's tokens or the last token
	pos := make([][]int, len(texts))
	for i, s := range ids {
		pos[i] = []int{len(s) - 1}
		if o.Span && i < len(o.Items) {
			it := o.Items[i]
			if it.Span[0] < 0 {
				return nil, inputErr("--span averages the tokens of a marked word, and line %q marks none: write it as [[word]]", it.Label)
			}
			if pos[i], err = spanTokens(e, s, it.Text, it.Span[0], it.Span[1]); err != nil {
				return nil, &InputError{Err: err}
			}
		}
	}
	run := hooks
	if len(dps) > 0 {
		for l := range info.NLayer {
			run = append(run, models.Hook{Kind: models.ResidPost, Layer: l})
		}
		run = models.SortHooks(uniqueHooks(run))
	}
	runner, err := e.NewRunner(ids, min(len(ids), 16))
	if err != nil {
		return nil, err
	}
	defer runner.Close()
	rows, err := runner.RunRows(ids, pos, run)
	if err != nil {
		return nil, err
	}
	vec := func(i int, h models.Hook) ([]float64, error) {
		a, ok := rows[i].Acts[h]
		if !ok {
			return nil, fmt.Errorf("analysis: the engine returned no %s", h.Name())
		}
		out := make([]float64, a.Width)
		for k := range rows[i].Positions {
			for c, x := range a.Row(k) {
				out[c] += float64(x)
			}
		}
		for c := range out {
			out[c] /= float64(len(rows[i].Positions))
			if math.IsNaN(out[c]) || math.IsInf(out[c], 0) {
				return nil, fmt.Errorf("%q has a non-finite value at %s: the model overflowed", texts[i], h.Short())
			}
		}
		return out, nil
	}
	if len(o.Items) >= 2 {
		for _, h := range hooks {
			xs := make([][]float64, len(o.Items))
			for i := range o.Items {
				if xs[i], err = vec(i, h); err != nil {
					return nil, err
				}
			}
			mh, err := mapVectors(h, xs, o)
			if err != nil {
				return nil, err
			}
			for _, q := range o.Analogies {
				ar, err := analogy(q, xs, o.Items, labels, max(o.Nearest, 1))
				if err != nil {
					return nil, err
				}
				mh.Analogies = append(mh.Analogies, *ar)
			}
			r.Hooks = append(r.Hooks, *mh)
		}
	}
	if len(dps) > 0 {
		dr := &DiffsResult{Hook: string(models.ResidPost)}
		dr.Pairs = slices.Clone(o.Diffs)
		for l := range info.NLayer {
			h := models.Hook{Kind: models.ResidPost, Layer: l}
			var ds [][]float64
			dl := DiffsLayer{Layer: l}
			for _, p := range dps {
				x, err := vec(p.x, h)
				if err != nil {
					return nil, err
				}
				y, err := vec(p.y, h)
				if err != nil {
					return nil, err
				}
				for c := range x {
					x[c] -= y[c]
				}
				ds = append(ds, x)
				dl.Norms = append(dl.Norms, vnorm(x))
			}
			for i := range ds {
				for j := i + 1; j < len(ds); j++ {
					dl.Pairs = append(dl.Pairs, DiffsPair{I: i, J: j, Cosine: vcos(ds[i], ds[j]), Distance: vdist(ds[i], ds[j])})
				}
			}
			dr.Layers = append(dr.Layers, dl)
		}
		r.Diffs = dr
	}
	return r, nil
}

// mapVectors computes the cosine matrix, clustering, PCA and k-means of
// the vectors xs at hook h.
func mapVectors(h models.Hook, xs [][]float64, o MapOptions) (*MapHook, error) {
	n := len(xs)
	mh := &MapHook{Hook: h.Name(), Silhouettes: map[int]float64{}}
	for _, x := range xs {
		mh.Norms = append(mh.Norms, vnorm(x))
	}
	mh.Cosine = make([][]float64, n)
	dist := make([][]float64, n)
	for i := range n {
		mh.Cosine[i] = make([]float64, n)
		dist[i] = make([]float64, n)
		for j := range n {
			mh.Cosine[i][j] = vcos(xs[i], xs[j])
			dist[i][j] = 1 - mh.Cosine[i][j]
		}
	}
	mh.Order, mh.Merges = averageLinkage(dist)
	var err error
	if mh.PCA, mh.Explained, err = pca2(xs); err != nil {
		return nil, err
	}
	unit := make([][]float64, n)
	for i, x := range xs {
		unit[i] = make([]float64, len(x))
		if nx := vnorm(x); nx > 0 {
			for c := range x {
				unit[i][c] = x[c] / nx
			}
		}
	}
	maxK := o.MaxK
	if maxK <= 0 {
		maxK = 8
	}
	mh.K, mh.Clusters = 1, make([]int, n)
	best := math.Inf(-1)
	for k := 2; k <= min(maxK, n-1); k++ {
		assign := kmeans(unit, k, 1)
		s := silhouette(unit, assign, k)
		mh.Silhouettes[k] = s
		if s > best+1e-12 {
			best, mh.K, mh.Clusters = s, k, assign
		}
	}
	return mh, nil
}

// analogy answers "a:b::c:?": the items nearest, by cosine, to b − a + c,
// leaving out a, b and c.
func analogy(q string, xs [][]float64, items []MapItem, labels map[string]int, k int) (*AnalogyResult, error) {
	left, right, ok := strings.Cut(q, "::")
	a, b, ok1 := strings.Cut(left, ":")
	c, qm, ok2 := strings.Cut(right, ":")
	if !ok || !ok1 || !ok2 || strings.TrimSpace(qm) != "?" {
		return nil, inputErr("--analogy %q: write a:b::c:? with labels of the prompt file, such as king:queen::man:?", q)
	}
	var idx [3]int
	for n, s := range []string{a, b, c} {
		i, ok := labels[strings.TrimSpace(s)]
		if !ok || i >= len(items) {
			return nil, inputErr("--analogy %q: %q is no label of the prompt file", q, strings.TrimSpace(s))
		}
		idx[n] = i
	}
	t := make([]float64, len(xs[0]))
	for c := range t {
		t[c] = xs[idx[1]][c] - xs[idx[0]][c] + xs[idx[2]][c]
	}
	var hits []AnalogyHit
	for i := range items {
		if slices.Contains(idx[:], i) {
			continue
		}
		hits = append(hits, AnalogyHit{Label: items[i].Label, Cosine: vcos(t, xs[i])})
	}
	slices.SortStableFunc(hits, func(x, y AnalogyHit) int { return cmpDesc(x.Cosine, y.Cosine) })
	return &AnalogyResult{Query: q, Nearest: hits[:min(k, len(hits))]}, nil
}

// ConceptDirection returns a control vector pointing from concept b to
// concept a: direction.L = resid_post.L(a) − resid_post.L(b) at each
// prompt's last token, for layers 1 .. n_layer−1 (llama.cpp adds nothing at
// layer 0), with lldiff's layer convention (offset 0). Steering with it at
// scale α adds α·(a − b) to the output of each chosen layer: with one layer
// chosen, α = 1 moves b's last-token residual there onto a's, and α
// between 0 and 1 interpolates, beyond 1 (or below 0) extrapolates.
func ConceptDirection(e models.Engine, a, b string, to models.TokenizeOptions) (*contrast.ControlVector, error) {
	info := e.ModelInfo()
	ids, err := TokenizePrompts(e, to, a, b)
	if err != nil {
		return nil, err
	}
	var hooks []models.Hook
	for l := 1; l < info.NLayer; l++ {
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
	}
	if len(hooks) == 0 {
		return nil, inputErr("%s has one layer: llama.cpp adds control vectors from layer 1 on, so there is nothing to steer", e.Path())
	}
	run, err := e.NewRunner(ids, 2)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	pos := [][]int{{len(ids[0]) - 1}, {len(ids[1]) - 1}}
	rows, err := run.RunRows(ids, pos, hooks)
	if err != nil {
		return nil, err
	}
	cv := &contrast.ControlVector{ModelHint: info.Arch, Directions: map[int][]float32{}, Offset: 0,
		Meta: map[string]string{"method": "concept", "norm": "difference of the last tokens", "a": a, "b": b, "hook": string(models.ResidPost)}}
	for _, h := range hooks {
		ra, okA := rows[0].Acts[h]
		rb, okB := rows[1].Acts[h]
		if !okA || !okB {
			return nil, fmt.Errorf("analysis: the engine returned no %s", h.Name())
		}
		d := make([]float32, ra.Width)
		for i := range d {
			d[i] = ra.Row(0)[i] - rb.Row(0)[i]
			if math.IsNaN(float64(d[i])) || math.IsInf(float64(d[i]), 0) {
				return nil, fmt.Errorf("the difference of %q and %q is not finite at %s: the model overflowed", a, b, h.Short())
			}
		}
		cv.Directions[h.Layer] = d
	}
	return cv, nil
}
