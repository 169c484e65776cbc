package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// TestPCAKnownAnswer: points on a line through (1, 2, 2)/3 with small
// noise in an orthogonal direction: PC1 holds the line's variance, and the
// coordinates are the positions along it (up to the sign convention).
func TestPCAKnownAnswer(t *testing.T) {
	u := []float64{1.0 / 3, 2.0 / 3, 2.0 / 3}
	w := []float64{2.0 / 3, 1.0 / 3, -2.0 / 3} // orthogonal to u
	// the noise has mean 0 and is uncorrelated with the positions, so the
	// axes are exactly u and w
	ts := []float64{-2, -1, -1, 1, 3}
	ns := []float64{0, 0.1, -0.1, 0, 0}
	var xs [][]float64
	for i, s := range ts {
		x := make([]float64, 3)
		for c := range x {
			x[c] = 7 + s*u[c] + ns[i]*w[c] // offset: PCA centres
		}
		xs = append(xs, x)
	}
	coords, expl, err := pca2(xs)
	if err != nil {
		t.Fatal(err)
	}
	meanT := 0.0
	var vt, vn float64
	for i := range ts {
		vt += (ts[i] - meanT) * (ts[i] - meanT)
		vn += ns[i] * ns[i] // the noise has mean 0
	}
	// the largest |coordinate| is positive: t = 3
	for i, s := range ts {
		if math.Abs(coords[i][0]-(s-meanT)) > 1e-9 {
			t.Errorf("point %d: PC1 %g, want %g", i, coords[i][0], s-meanT)
		}
		if math.Abs(math.Abs(coords[i][1])-math.Abs(ns[i])) > 1e-9 {
			t.Errorf("point %d: |PC2| %g, want %g", i, math.Abs(coords[i][1]), math.Abs(ns[i]))
		}
	}
	if math.Abs(expl[0]-vt/(vt+vn)) > 1e-12 || math.Abs(expl[1]-vn/(vt+vn)) > 1e-12 {
		t.Errorf("explained %v, want %g, %g", expl, vt/(vt+vn), vn/(vt+vn))
	}
}

// TestKMeansSilhouette: three well separated blobs: k-means with k chosen
// by silhouette finds exactly them.
func TestKMeansSilhouette(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	centres := [][]float64{{10, 0, 0, 0}, {0, 10, 0, 0}, {0, 0, 0, -10}}
	var xs [][]float64
	var truth []int
	for i := range 30 {
		c := i % 3
		x := slices.Clone(centres[c])
		for j := range x {
			x[j] += 0.5 * rng.NormFloat64()
		}
		xs = append(xs, x)
		truth = append(truth, c)
	}
	best, bestK := math.Inf(-1), 0
	var bestA []int
	for k := 2; k <= 6; k++ {
		a := kmeans(xs, k, 1)
		if s := silhouette(xs, a, k); s > best {
			best, bestK, bestA = s, k, a
		}
	}
	if bestK != 3 {
		t.Fatalf("silhouette chose k = %d, want 3", bestK)
	}
	// same partition up to the numbering (kmeans numbers by first member,
	// as truth does here: 0, 1, 2, 0, ...)
	if !slices.Equal(bestA, truth) {
		t.Errorf("clusters %v, want %v", bestA, truth)
	}
	if best < 0.8 {
		t.Errorf("silhouette %g for separated blobs, want > 0.8", best)
	}
}

// TestAverageLinkage: two tight pairs and a far point: the pairs merge
// first, and the leaf order keeps each pair together.
func TestAverageLinkage(t *testing.T) {
	pts := []float64{0, 10, 0.1, 10.2, 30}
	n := len(pts)
	d := make([][]float64, n)
	for i := range d {
		d[i] = make([]float64, n)
		for j := range d[i] {
			d[i][j] = math.Abs(pts[i] - pts[j])
		}
	}
	order, merges := averageLinkage(d)
	if len(merges) != n-1 {
		t.Fatalf("%d merges, want %d", len(merges), n-1)
	}
	if merges[0].A != 0 || merges[0].B != 2 || math.Abs(merges[0].Dist-0.1) > 1e-12 {
		t.Errorf("first merge %+v, want 0 and 2 at 0.1", merges[0])
	}
	if merges[1].A != 1 || merges[1].B != 3 {
		t.Errorf("second merge %+v, want 1 and 3", merges[1])
	}
	// average linkage of {0,2} and {1,3}: (10+10.2+9.9+10.1)/4
	if merges[2].A != 5 || merges[2].B != 6 || math.Abs(merges[2].Dist-10.05) > 1e-12 {
		t.Errorf("third merge %+v, want clusters 5 and 6 at 10.05", merges[2])
	}
	if !slices.Equal(order, []int{0, 2, 1, 3, 4}) {
		t.Errorf("order %v, want [0 2 1 3 4]", order)
	}
}

func TestParseMapItems(t *testing.T) {
	items, err := ParseMapItems("# comment\nking\tThe [[king]] sat.\n\nThe queen sat.\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Label != "king" || items[0].Text != "The king sat." || items[0].Span != [2]int{4, 8} ||
		items[1].Label != "The queen sat." || items[1].Span != [2]int{-1, -1} {
		t.Fatalf("got %+v", items)
	}
	for _, bad := range []string{"", "a [[b", "a]] b", "x\t[[]]", "a [[b]] [[c]]", "l\t", "a\tb\tc"} {
		if _, err := ParseMapItems(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// mapHeShe are sentences that differ in the pronoun they end with.
var mapHeShe = []string{
	"he\tOnce upon a time, there was a boy named Tim. One day, he",
	"he\tOnce upon a time, there was a little boy. One day, he",
	"he\tOnce upon a time, there was a boy who liked toys. One day, he",
	"he\tOnce upon a time, there was a happy boy. One day, he",
	"he\tOnce upon a time, there was a boy named Ben. One day, he",
	"she\tOnce upon a time, there was a girl named Lily. One day, she",
	"she\tOnce upon a time, there was a little girl. One day, she",
	"she\tOnce upon a time, there was a girl who liked toys. One day, she",
	"she\tOnce upon a time, there was a happy girl. One day, she",
	"she\tOnce upon a time, there was a girl named Sue. One day, she",
}

// TestMapHeShe: on stories260K the he- and she- sentences separate along
// PC1 at the last layer, and the diffs are consistent with the vectors.
func TestMapHeShe(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		// labels must be unique for analogies; keep the he/she class apart
		var lines []string
		var class []string
		for i, l := range mapHeShe {
			c, text, _ := strings.Cut(l, "\t")
			lines = append(lines, c+string(rune('0'+i))+"\t"+text)
			class = append(class, c)
		}
		items, err := ParseMapItems(strings.Join(lines, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Map(e, MapOptions{Items: items, Hooks: "resid_post.4,resid_post.2", Diffs: []string{"he0|she5", "he1|she6"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Hooks) != 2 || r.Hooks[1].Hook != "blocks.4.hook_resid_post" {
			t.Fatalf("hooks %d, want resid_post.2 and .4 in order", len(r.Hooks))
		}
		h := r.Hooks[1]
		// every he on one side of 0 along PC1, every she on the other
		signs := map[string]map[bool]int{"he": {}, "she": {}}
		for i, c := range class {
			signs[c][h.PCA[i][0] > 0]++
		}
		if len(signs["he"]) != 1 || len(signs["she"]) != 1 {
			t.Fatalf("PC1 does not separate he from she: %v (coords %v)", signs, h.PCA)
		}
		for side := range signs["he"] {
			if _, ok := signs["she"][side]; ok {
				t.Fatalf("he and she on the same side of PC1: %v", signs)
			}
		}
		if h.Explained[0] <= h.Explained[1] || h.Explained[0] <= 0 || h.Explained[0]+h.Explained[1] > 1+1e-12 {
			t.Errorf("explained variance %v", h.Explained)
		}
		if !slices.Equal(sortedCopy(h.Order), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
			t.Errorf("order %v is not a permutation", h.Order)
		}
		for i := range h.Cosine {
			if math.Abs(h.Cosine[i][i]-1) > 1e-12 {
				t.Errorf("cos(v%d, v%d) = %g", i, i, h.Cosine[i][i])
			}
		}
		// diffs at layer 4 recomputed from the last-token vectors
		d := r.Diffs.Layers[4]
		if len(d.Pairs) != 1 || d.Pairs[0].I != 0 || d.Pairs[0].J != 1 {
			t.Fatalf("pairs %+v", d.Pairs)
		}
		run, err := e.NewRunner(nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		defer run.Close()
		hk := models.Hook{Kind: models.ResidPost, Layer: 4}
		var v [4][]float64
		for k, idx := range []int{0, 5, 1, 6} {
			ids, _ := e.Tokenize(items[idx].Text, models.TokenizeOptions{})
			cs, err := run.Run([][]int32{ids}, []models.Hook{hk})
			if err != nil {
				t.Fatal(err)
			}
			a, _ := cs[0].At(hk)
			for _, x := range a.Row(len(ids) - 1) {
				v[k] = append(v[k], float64(x))
			}
		}
		d1, d2 := make([]float64, len(v[0])), make([]float64, len(v[0]))
		for c := range d1 {
			d1[c], d2[c] = v[0][c]-v[1][c], v[2][c]-v[3][c]
		}
		if got, want := d.Pairs[0].Cosine, vcos(d1, d2); math.Abs(got-want) > 1e-5 {
			t.Errorf("diffs cos %g, direct %g", got, want)
		}
		if got, want := d.Pairs[0].Distance, vdist(d1, d2); math.Abs(got-want) > 1e-5*want {
			t.Errorf("diffs distance %g, direct %g", got, want)
		}
	})
}

func sortedCopy(x []int) []int {
	y := slices.Clone(x)
	slices.Sort(y)
	return y
}

// TestMapSpanAnalogy: --span averages the marked word's tokens (checked
// against the rows of those tokens), and an analogy whose answer is built
// in (d = b − a + c exactly, by choosing the items) finds it.
func TestMapSpan(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		items, err := ParseMapItems("a\tThe [[little dog]] ran.\nb\tA big [[cat]] sat down.\nc\tThe [[ball]] was red.")
		if err != nil {
			t.Fatal(err)
		}
		r, err := Map(e, MapOptions{Items: items, Hooks: "resid_post.1", Span: true, Analogies: []string{"a:b::c:?"}})
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := e.Tokenize(items[0].Text, models.TokenizeOptions{})
		pos, err := spanTokens(e, ids, items[0].Text, items[0].Span[0], items[0].Span[1])
		if err != nil {
			t.Fatal(err)
		}
		var spelled string
		for _, p := range pos {
			spelled += string(e.Piece(ids[p]))
		}
		if strings.TrimSpace(spelled) != "little dog" {
			t.Fatalf("span tokens spell %q, want \"little dog\"", spelled)
		}
		run, err := e.NewRunner(nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer run.Close()
		hk := models.Hook{Kind: models.ResidPost, Layer: 1}
		cs, err := run.Run([][]int32{ids}, []models.Hook{hk})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := cs[0].At(hk)
		mean := make([]float64, a.Width)
		for _, p := range pos {
			for c, x := range a.Row(p) {
				mean[c] += float64(x) / float64(len(pos))
			}
		}
		if got := r.Hooks[0].Norms[0]; math.Abs(got-vnorm(mean)) > 1e-5*vnorm(mean) {
			t.Errorf("span vector norm %g, direct %g", got, vnorm(mean))
		}
		if an := r.Hooks[0].Analogies; len(an) != 1 || len(an[0].Nearest) != 0 {
			t.Errorf("analogy over three items leaves no candidate: %+v", an)
		}
	})
}

// TestAnalogy: item d is exactly b − a + c, so it answers a:b::c:? with
// cosine 1; e points the other way and comes last.
func TestAnalogy(t *testing.T) {
	xs := [][]float64{{1, 0, 0}, {1, 1, 0}, {0, 0, 1}, {0, 1, 1}, {0, -1, -1}, {1, 0, 1}}
	var items []MapItem
	labels := map[string]int{}
	for i, l := range []string{"a", "b", "c", "d", "e", "f"} {
		items = append(items, MapItem{Label: l})
		labels[l] = i
	}
	r, err := analogy("a:b::c:?", xs, items, labels, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Nearest) != 3 || r.Nearest[0].Label != "d" || math.Abs(r.Nearest[0].Cosine-1) > 1e-12 {
		t.Fatalf("got %+v, want d first with cosine 1", r.Nearest)
	}
	if r.Nearest[1].Label != "f" || math.Abs(r.Nearest[1].Cosine-0.5) > 1e-12 {
		t.Errorf("second %+v, want f at 0.5", r.Nearest[1])
	}
	for _, bad := range []string{"a:b:c:?", "a:b::x:?", "a:b::c:d"} {
		if _, err := analogy(bad, xs, items, labels, 3); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestConceptDirection: direction.L is resid_post.L of A's last token
// minus B's, for every layer from 1 on, and steering with it runs.
func TestConceptDirection(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		a, b := "The girl was happy. She", "The boy was sad. He"
		cv, err := ConceptDirection(e, a, b, models.TokenizeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nl := e.ModelInfo().NLayer
		if len(cv.Directions) != nl-1 || cv.Directions[0] != nil || cv.Offset != 0 {
			t.Fatalf("%d directions (layer 0: %v), offset %d; want layers 1..%d, offset 0", len(cv.Directions), cv.Directions[0] != nil, cv.Offset, nl-1)
		}
		run, err := e.NewRunner(nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer run.Close()
		var hooks []models.Hook
		for l := range nl {
			hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
		}
		var last [2]*models.Cache
		var n [2]int
		for i, s := range []string{a, b} {
			ids, _ := e.Tokenize(s, models.TokenizeOptions{})
			cs, err := run.Run([][]int32{ids}, hooks)
			if err != nil {
				t.Fatal(err)
			}
			last[i], n[i] = cs[0], len(ids)-1
		}
		for l := 1; l < nl; l++ {
			h := models.Hook{Kind: models.ResidPost, Layer: l}
			ra, _ := last[0].At(h)
			rb, _ := last[1].At(h)
			for c, x := range cv.Directions[l] {
				// the same engine, the same rows: equal up to the batch
				// (reference: exactly)
				if want := ra.Row(n[0])[c] - rb.Row(n[1])[c]; math.Abs(float64(x-want)) > 1e-4*(1+math.Abs(float64(want))) {
					t.Fatalf("layer %d dim %d: %g, want %g", l, c, x, want)
				}
			}
		}
		res, err := Steer(e, SteerOptions{Prompt: "One day", Vector: cv, VectorFile: "direction", Scales: []float64{0.5, 1}, N: 4, TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Scales) != 2 || !(res.Scales[1].KL > 0) {
			t.Errorf("steering along the direction changed nothing: %+v", res.Scales)
		}
	})
}
