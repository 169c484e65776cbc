package diff

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

var (
	attn0   = models.Hook{Kind: models.AttnOut, Layer: 0}
	resid0  = models.Hook{Kind: models.ResidPost, Layer: 0}
	attn1   = models.Hook{Kind: models.AttnOut, Layer: 1}
	resid1  = models.Hook{Kind: models.ResidPost, Layer: 1}
	logitsH = models.Hook{Kind: models.Logits, Layer: -1}
)

// fixture returns the caches of two 3-token prompts from a 2-layer model
// with hooks attn_out and resid_post (width 2) and logits (width 3). The
// last rows are chosen so that the differences are known by hand:
//
//	hook           A      B      ‖A−B‖       ‖A‖ ‖B‖  RelL2          Cosine
//	attn_out.0     (3,4)  (3,4)  0           5   5    0              1
//	resid_post.0   (3,4)  (4,3)  √2 ≈ 1.41   5   5    √2/5 ≈ 0.283   24/25
//	attn_out.1     (1,0)  (0,1)  √2 ≈ 1.41   1   1    √2 ≈ 1.41      0
//	resid_post.1   (6,8)  (8,6)  2√2 ≈ 2.83  10  10   2√2/10 = √2/5  96/100
//	logits         (1,2,3) (1,2,3) 0         √14 √14  0              1
//
// so attn_out.1 changes most relative to its size, resid_post.1 most in
// absolute terms, and resid_post.0 and .1 tie exactly on RelL2 and Cosine
// (the second is the first scaled by 2, a power of two, so every rounding
// step scales with it).
func fixture() (a, b *models.Cache) {
	a = models.NewCache([]int32{1, 10, 11}, 2)
	b = models.NewCache([]int32{1, 10, 12}, 2)
	set := func(c *models.Cache, h models.Hook, width int, data ...float32) {
		c.Set(&models.Activation{Hook: h, Width: width, Data: data})
	}
	set(a, attn0, 2, 0, 1, 2, 2, 3, 4)
	set(b, attn0, 2, 0, 1, 2, 2, 3, 4)
	set(a, resid0, 2, 1, 1, 0, 0, 3, 4)
	set(b, resid0, 2, 1, 1, 0, 0, 4, 3)
	set(a, attn1, 2, 5, 5, 5, 5, 1, 0)
	set(b, attn1, 2, 5, 5, 5, 5, 0, 1)
	// Rows 0 and 2 of resid_post.1 are used for the aggregation test.
	set(a, resid1, 2, 1, 2, 9, 9, 6, 8)
	set(b, resid1, 2, 1, 0, 7, 7, 8, 6)
	set(a, logitsH, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3)
	set(b, logitsH, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3)
	return a, b
}

func checkNear(t *testing.T, what string, got, want float64) {
	t.Helper()
	if !near(got, want, tol) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestCompareLast(t *testing.T) {
	a, b := fixture()
	last := []PosPair{{2, 2}}
	comps, err := Compare(a, b, []models.Hook{attn0, resid0, attn1, resid1, logitsH}, last)
	if err != nil {
		t.Fatal(err)
	}
	r2 := math.Sqrt2
	want := []Component{
		{Hook: attn0, L2: 0, RelL2: 0, Cosine: 1, NormA: 5, NormB: 5},
		{Hook: resid0, L2: r2, RelL2: r2 / 5, Cosine: 24.0 / 25, NormA: 5, NormB: 5},
		{Hook: attn1, L2: r2, RelL2: r2, Cosine: 0, NormA: 1, NormB: 1},
		{Hook: resid1, L2: 2 * r2, RelL2: r2 / 5, Cosine: 96.0 / 100, NormA: 10, NormB: 10},
		{Hook: logitsH, L2: 0, RelL2: 0, Cosine: 1, NormA: math.Sqrt(14), NormB: math.Sqrt(14)},
	}
	if len(comps) != len(want) {
		t.Fatalf("got %d components, want %d", len(comps), len(want))
	}
	for i, w := range want {
		c := comps[i]
		if c.Hook != w.Hook {
			t.Errorf("component %d is %s, want %s", i, c.Hook.Short(), w.Hook.Short())
			continue
		}
		name := w.Hook.Short()
		checkNear(t, name+" L2", c.L2, w.L2)
		checkNear(t, name+" RelL2", c.RelL2, w.RelL2)
		checkNear(t, name+" Cosine", c.Cosine, w.Cosine)
		checkNear(t, name+" NormA", c.NormA, w.NormA)
		checkNear(t, name+" NormB", c.NormB, w.NormB)
		// With one pair the aggregate is the per-pair value, exactly.
		if len(c.PerPos) != 1 {
			t.Fatalf("%s: %d PerPos, want 1", name, len(c.PerPos))
		}
		p := c.PerPos[0]
		if p != (PosMetrics{Pair: last[0], L2: c.L2, RelL2: c.RelL2, Cosine: c.Cosine, NormA: c.NormA, NormB: c.NormB}) {
			t.Errorf("%s: PerPos[0] = %+v, differs from the aggregate %+v", name, p, c)
		}
	}
}

// TestCompareAggregate compares rows 0 and 2 of resid_post.1 by hand:
//
//	row 0: A (1,2), B (1,0): A−B (0,2), ‖A−B‖² 4, ‖A‖² 5, ‖B‖² 1, A·B 1
//	row 2: A (6,8), B (8,6): A−B (−2,2), ‖A−B‖² 8, ‖A‖² 100, ‖B‖² 100, A·B 96
//
// Aggregate: L2 = √(4+8) = √12 ≈ 3.464, NormA = √105 ≈ 10.247,
// NormB = √101 ≈ 10.050, RelL2 = 2√12/(√105+√101) ≈ 0.3413,
// Cosine = (1+96)/(√105 √101) ≈ 0.9419.
func TestCompareAggregate(t *testing.T) {
	a, b := fixture()
	pairs := []PosPair{{0, 0}, {2, 2}}
	comps, err := Compare(a, b, []models.Hook{resid1}, pairs)
	if err != nil {
		t.Fatal(err)
	}
	c := comps[0]
	checkNear(t, "L2", c.L2, math.Sqrt(12))
	checkNear(t, "NormA", c.NormA, math.Sqrt(105))
	checkNear(t, "NormB", c.NormB, math.Sqrt(101))
	checkNear(t, "RelL2", c.RelL2, 2*math.Sqrt(12)/(math.Sqrt(105)+math.Sqrt(101)))
	checkNear(t, "Cosine", c.Cosine, 97/(math.Sqrt(105)*math.Sqrt(101)))
	// L2 is the Frobenius norm of the per-pair distances.
	checkNear(t, "L2 from PerPos", c.L2, math.Hypot(c.PerPos[0].L2, c.PerPos[1].L2))

	// Per pair: row 0 has L2 2, norms √5 and 1, RelL2 2/((√5+1)/2) = √5−1,
	// Cosine 1/√5; row 2 has L2 √8, norms 10 and 10, RelL2 √8/10, Cosine 0.96.
	wantPer := []PosMetrics{
		{Pair: pairs[0], L2: 2, RelL2: math.Sqrt(5) - 1, Cosine: 1 / math.Sqrt(5), NormA: math.Sqrt(5), NormB: 1},
		{Pair: pairs[1], L2: math.Sqrt(8), RelL2: math.Sqrt(8) / 10, Cosine: 0.96, NormA: 10, NormB: 10},
	}
	for i, w := range wantPer {
		p := c.PerPos[i]
		if p.Pair != w.Pair {
			t.Errorf("PerPos[%d].Pair = %v, want %v", i, p.Pair, w.Pair)
		}
		checkNear(t, "PerPos L2", p.L2, w.L2)
		checkNear(t, "PerPos RelL2", p.RelL2, w.RelL2)
		checkNear(t, "PerPos Cosine", p.Cosine, w.Cosine)
		checkNear(t, "PerPos NormA", p.NormA, w.NormA)
		checkNear(t, "PerPos NormB", p.NormB, w.NormB)
	}
}

// TestCompareDefaultHooks checks that nil hooks compare every hook of A in
// model order, and that pairs with different A and B rows read the right
// rows: A row 2 of attn_out.0 is (3,4), B row 0 is (0,1), so A−B = (3,3),
// ‖A−B‖ = 3√2.
func TestCompareDefaultHooks(t *testing.T) {
	a, b := fixture()
	comps, err := Compare(a, b, nil, []PosPair{{2, 0}})
	if err != nil {
		t.Fatal(err)
	}
	var got []models.Hook
	for _, c := range comps {
		got = append(got, c.Hook)
	}
	want := []models.Hook{attn0, resid0, attn1, resid1, logitsH}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hooks %v, want %v", got, want)
	}
	checkNear(t, "attn_out.0 L2", comps[0].L2, 3*math.Sqrt2)
	checkNear(t, "attn_out.0 NormB", comps[0].NormB, 1)
}

func TestCompareErrors(t *testing.T) {
	a, b := fixture()
	all := []models.Hook{attn0, resid1}
	last := []PosPair{{2, 2}}
	missing := models.Hook{Kind: models.MLPOut, Layer: 0}

	onlyA := models.NewCache(nil, 2)
	onlyA.Set(&models.Activation{Hook: missing, Width: 2, Data: []float32{1, 2}})
	wide := models.NewCache(nil, 2)
	wide.Set(&models.Activation{Hook: attn0, Width: 3, Data: make([]float32, 9)})
	ragged := models.NewCache(nil, 2)
	ragged.Set(&models.Activation{Hook: attn0, Width: 2, Data: make([]float32, 5)})
	zero := models.NewCache(nil, 2)
	zero.Set(&models.Activation{Hook: attn0, Width: 0})

	tests := []struct {
		name  string
		a, b  *models.Cache
		hooks []models.Hook
		pairs []PosPair
		want  string
	}{
		{"nil A", nil, b, all, last, "compare: no activation cache for prompt A"},
		{"nil B", a, nil, all, last, "compare: no activation cache for prompt B"},
		{"no pairs", a, b, all, nil, "compare: no positions to compare"},
		{"empty A", models.NewCache(nil, 2), b, nil, last, "compare: prompt A has no captured activations"},
		{"missing in A", a, b, []models.Hook{missing}, last,
			"hook blocks.0.hook_mlp_out: not captured for prompt A; add it to --hooks"},
		{"missing in B", onlyA, b, nil, []PosPair{{0, 0}},
			"hook blocks.0.hook_mlp_out: not captured for prompt B; add it to --hooks"},
		{"widths", a, wide, all, last,
			"hook blocks.0.hook_attn_out: widths differ: prompt A has 2, prompt B has 3 (were both captured from the same model?)"},
		{"ragged", ragged, b, all, last,
			"hook blocks.0.hook_attn_out: prompt A's activation has 5 values, not a multiple of its width 2"},
		{"zero width", a, zero, all, last, "hook blocks.0.hook_attn_out: prompt B's activation has width 0"},
		{"A out of range", a, b, all, []PosPair{{0, 0}, {3, 0}},
			"hook blocks.0.hook_attn_out: position pair 3:0: position 3 is out of range for prompt A, whose activation has 3 rows (0..2)"},
		{"B negative", a, b, all, []PosPair{{0, -1}},
			"hook blocks.0.hook_attn_out: position pair 0:-1: position -1 is out of range for prompt B, whose activation has 3 rows (0..2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Compare(tt.a, tt.b, tt.hooks, tt.pairs)
			if err == nil {
				t.Fatalf("got %d components, want error %q", len(got), tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func shorts(comps []Component) string {
	var s []string
	for _, c := range comps {
		s = append(s, c.Hook.Short())
	}
	return strings.Join(s, " ")
}

func TestRank(t *testing.T) {
	a, b := fixture()
	// Hooks in reverse model order, so that the tie-break cannot come from
	// the input order.
	comps, err := Compare(a, b, []models.Hook{logitsH, resid1, attn1, resid0, attn0}, []PosPair{{2, 2}})
	if err != nil {
		t.Fatal(err)
	}
	before := shorts(comps)
	tests := []struct {
		by   string
		want string
	}{
		// RelL2: √2, then the exact tie √2/5 in layer order, then 0, 0
		// with the model-level logits last.
		{"", "attn_out.1 resid_post.0 resid_post.1 attn_out.0 logits"},
		{"rel", "attn_out.1 resid_post.0 resid_post.1 attn_out.0 logits"},
		// L2: 2√2, then the tie √2 in layer order, then 0, 0.
		{"l2", "resid_post.1 resid_post.0 attn_out.1 attn_out.0 logits"},
		// Cosine ascending: 0, the tie 0.96 in layer order, then 1, 1.
		{"cosine", "attn_out.1 resid_post.0 resid_post.1 attn_out.0 logits"},
	}
	for _, tt := range tests {
		t.Run(tt.by, func(t *testing.T) {
			got, err := Rank(comps, tt.by)
			if err != nil {
				t.Fatal(err)
			}
			if s := shorts(got); s != tt.want {
				t.Errorf("Rank(%q) = %s, want %s", tt.by, s, tt.want)
			}
			if s := shorts(comps); s != before {
				t.Errorf("Rank changed its input order to %s", s)
			}
		})
	}
	if _, err := Rank(comps, "size"); err == nil || err.Error() != `rank by "size": accepted rel (default), l2, cosine` {
		t.Errorf("Rank(size) error = %v", err)
	}
}

// TestRankTies checks the tie-break on hand-made components: layer first,
// then models.LayerKinds order (resid_pre, z, attn_out, resid_mid, mlp_out,
// resid_post), model-level hooks last (ln_final before logits), and NaN
// ahead of every number.
func TestRankTies(t *testing.T) {
	h := func(k models.Kind, l int) models.Hook { return models.Hook{Kind: k, Layer: l} }
	comp := func(hook models.Hook, v float64) Component {
		return Component{Hook: hook, L2: v, RelL2: v, Cosine: v}
	}
	comps := []Component{
		comp(h(models.Logits, -1), 1),
		comp(h(models.LnFinal, -1), 1),
		comp(h(models.ResidPost, 0), 1),
		comp(h(models.MLPOut, 1), 1),
		comp(h(models.ResidPre, 1), 1),
		comp(h(models.Z, 1), 1),
		comp(h(models.MLPOut, 0), 2),
		comp(h(models.ResidMid, 0), 1),
		comp(h(models.AttnOut, 2), math.NaN()),
		comp(h(models.AttnOut, 0), 1),
		comp(h(models.ResidPre, 0), 0.5),
	}
	tests := []struct {
		by, want string
	}{
		{"rel", "attn_out.2 mlp_out.0 attn_out.0 resid_mid.0 resid_post.0 resid_pre.1 z.1 mlp_out.1 ln_final logits resid_pre.0"},
		{"l2", "attn_out.2 mlp_out.0 attn_out.0 resid_mid.0 resid_post.0 resid_pre.1 z.1 mlp_out.1 ln_final logits resid_pre.0"},
		{"cosine", "attn_out.2 resid_pre.0 attn_out.0 resid_mid.0 resid_post.0 resid_pre.1 z.1 mlp_out.1 ln_final logits mlp_out.0"},
	}
	for _, tt := range tests {
		t.Run(tt.by, func(t *testing.T) {
			got, err := Rank(comps, tt.by)
			if err != nil {
				t.Fatal(err)
			}
			if s := shorts(got); s != tt.want {
				t.Errorf("Rank(%q)\n got %s\nwant %s", tt.by, s, tt.want)
			}
		})
	}
}

func TestByLayer(t *testing.T) {
	a, b := fixture()
	comps, err := Compare(a, b, []models.Hook{logitsH, resid1, attn0, resid0, attn1}, []PosPair{{2, 2}})
	if err != nil {
		t.Fatal(err)
	}
	got := ByLayer(comps)
	r := math.Sqrt2 / 5
	want := []LayerRow{
		{Layer: 0, Rel: map[models.Kind]float64{models.AttnOut: 0, models.ResidPost: r}},
		{Layer: 1, Rel: map[models.Kind]float64{models.AttnOut: math.Sqrt2, models.ResidPost: r}},
		{Layer: -1, Rel: map[models.Kind]float64{models.Logits: 0}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Layer != w.Layer || len(g.Rel) != len(w.Rel) {
			t.Errorf("row %d = %v, want %v", i, g, w)
			continue
		}
		for k, v := range w.Rel {
			gv, ok := g.Rel[k]
			if !ok {
				t.Errorf("row %d: no %s", i, k)
				continue
			}
			checkNear(t, "row "+string(k), gv, v)
		}
	}
	if rows := ByLayer(nil); len(rows) != 0 {
		t.Errorf("ByLayer(nil) = %v, want no rows", rows)
	}
}
