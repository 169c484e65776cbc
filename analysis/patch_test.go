package analysis

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

func patchOpts(nLayer int) PatchOptions {
	layers := make([]int, nLayer)
	for i := range layers {
		layers[i] = i
	}
	return PatchOptions{
		Model: "m", Clean: promptGirl, Corrupt: promptBoy, Answer: " she", Wrong: " he",
		Kinds: []models.Kind{models.ResidPre, models.ResidPost, models.AttnOut}, Layers: layers, Positions: PosAll,
	}
}

// TestPatch patches every layer at every position at once, on every
// engine: writing the whole clean residual stream (resid_pre of layer 0,
// resid_post of the last layer) into the corrupt run makes it the clean
// run, normalised metric 1; and resid_pre of layer L+1 is resid_post of
// layer L, one activation, so both score the same.
func TestPatch(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		nl := e.ModelInfo().NLayer
		o := patchOpts(nl)
		r, err := Patch(e, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Metric != "logit_diff" || r.Clean.LogitDiff == nil || !(r.Clean.Metric > 0) || !(r.Corrupt.Metric < 0) {
			t.Fatalf("metric %s: clean %+v corrupt %+v", r.Metric, r.Clean.PatchScore, r.Corrupt.PatchScore)
		}
		if len(r.Results) != nl*len(o.Kinds) {
			t.Fatalf("%d results, want %d", len(r.Results), nl*len(o.Kinds))
		}
		by := map[string]PatchedCell{}
		for _, c := range r.Results {
			by[c.Short] = c
		}
		// the clean run itself, up to the float32 rounding of a run with
		// a patch (1e-4 of the clean−corrupt difference)
		for _, short := range []string{"resid_pre.0", fmt.Sprintf("resid_post.%d", nl-1)} {
			if n := by[short].Normalized; math.Abs(n-1) > 1e-4 {
				t.Errorf("%s: normalized %v, want 1", short, n)
			}
		}
		for l := range nl - 1 {
			a, b := by[fmt.Sprintf("resid_post.%d", l)], by[fmt.Sprintf("resid_pre.%d", l+1)]
			if a.Metric != b.Metric {
				t.Errorf("resid_post.%d %v, resid_pre.%d %v: one activation, two scores", l, a.Metric, l+1, b.Metric)
			}
		}
		// the answer probability is the softmax's, and lies in (0, 1)
		for _, c := range r.Results {
			if !(c.AnswerProb > 0 && c.AnswerProb < 1) || math.Abs(math.Log(c.AnswerProb)-c.AnswerLogProb) > 1e-9 {
				t.Errorf("%s: answer prob %v, logprob %v", c.Short, c.AnswerProb, c.AnswerLogProb)
			}
		}
		if r.Runs != nl*len(o.Kinds)-(nl-1) {
			t.Errorf("%d runs, want %d (resid_pre.L+1 = resid_post.L run once)", r.Runs, nl*len(o.Kinds)-(nl-1))
		}
	})
}

// TestPatchFromCompare ranks with compare's metric and checks the ranking
// agrees with what the rank correlation says.
func TestPatchFromCompare(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		o := patchOpts(e.ModelInfo().NLayer)
		o.Positions, o.Top = PosLast, 4
		r, err := Patch(e, o)
		if err != nil {
			t.Fatal(err)
		}
		fc := r.FromCompare
		if fc == nil || len(fc.Components) != 4 || len(r.Results) != 4 {
			t.Fatalf("from_compare %+v, %d results", fc, len(r.Results))
		}
		for i, c := range fc.Components {
			if c.CompareRank != i+1 || (i > 0 && c.RelL2 > fc.Components[i-1].RelL2) {
				t.Errorf("component %d: %+v not in compare's order", i, c)
			}
		}
		if fc.Spearman == nil || *fc.Spearman < -1 || *fc.Spearman > 1 {
			t.Errorf("spearman %v", fc.Spearman)
		}
	})
}

func TestPatchInputErrors(t *testing.T) {
	e := openReference(t, stories(t))
	for name, edit := range map[string]func(*PatchOptions){
		"same first token": func(o *PatchOptions) { o.Wrong = " sheep" },
		"empty answer":     func(o *PatchOptions) { o.Answer = "" },
		"each, unequal": func(o *PatchOptions) {
			o.Positions = PosEach
			o.Corrupt = "Once upon a time, there was a big dog. One day,"
		},
		"bad position": func(o *PatchOptions) { o.Positions = "99" },
	} {
		t.Run(name, func(t *testing.T) {
			o := patchOpts(2)
			edit(&o)
			_, err := Patch(e, o)
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("err = %v, want an InputError", err)
			}
		})
	}
}

func TestAlignPositions(t *testing.T) {
	for _, tc := range []struct {
		clean, corrupt []int32
		want           string
	}{
		{[]int32{1, 2, 3}, []int32{1, 2, 3}, "[{0 0} {1 1} {2 2}]"},
		// one token replaced by two: the prefix in place, the rest from the end
		{[]int32{1, 5, 7, 8}, []int32{1, 6, 6, 7, 8}, "[{0 0} {1 2} {2 3} {3 4}]"},
		{[]int32{1, 6, 6, 7, 8}, []int32{1, 5, 7, 8}, "[{0 0} {2 1} {3 2} {4 3}]"},
		// nothing in common but the length: position by position
		{[]int32{1, 2}, []int32{3, 4}, "[{0 0} {1 1}]"},
		// the corrupt prompt is a prefix of the clean one
		{[]int32{1, 2, 3}, []int32{1, 2}, "[{0 0} {1 1}]"},
	} {
		if got := fmt.Sprint(AlignPositions(tc.clean, tc.corrupt)); got != tc.want {
			t.Errorf("AlignPositions(%v, %v) = %s, want %s", tc.clean, tc.corrupt, got, tc.want)
		}
	}
}

func TestPatchPositions(t *testing.T) {
	five, four := []int32{1, 2, 3, 4, 5}, []int32{1, 9, 4, 5}
	for _, tc := range []struct {
		spec           string
		clean, corrupt []int32
		mode, groups   string
		notes          int
		err            string
	}{
		{"each", five, five, PosEach, "[[{0 0}] [{1 1}] [{2 2}] [{3 3}] [{4 4}]]", 0, ""},
		{"", five, five, PosEach, "[[{0 0}] [{1 1}] [{2 2}] [{3 3}] [{4 4}]]", 0, ""},
		{"all", five, four, PosAll, "[[{0 0} {2 1} {3 2} {4 3}]]", 1, ""},
		{"last", five, four, PosLast, "[[{4 3}]]", 0, ""},
		{"1,-1", five, five, PosList, "[[{1 1}] [{4 4}]]", 0, ""},
		{"2:1,last", five, four, PosList, "[[{2 1}] [{4 3}]]", 0, ""},
		{"each", five, four, "", "", 0, "--pos each: the clean prompt has 5 tokens and the corrupt one 4"},
		{"1", five, four, "", "", 0, "--pos 1: the clean prompt has 5 tokens"},
		{"7", five, five, "", "", 0, "--pos: positions \"7\""},
	} {
		mode, groups, notes, err := PatchPositions(tc.spec, tc.clean, tc.corrupt)
		if tc.err != "" {
			var ie *InputError
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ie) {
				t.Errorf("%q: err = %v, want an InputError with %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || mode != tc.mode || fmt.Sprint(groups) != tc.groups || len(notes) != tc.notes {
			t.Errorf("%q: %s %v %q %v; want %s %s and %d notes", tc.spec, mode, groups, notes, err, tc.mode, tc.groups, tc.notes)
		}
	}
}

// cacheOf returns a cache of one position whose hooks hold the rows given.
func cacheOf(rows map[models.Hook][]float32) *models.Cache {
	c := models.NewCache([]int32{0}, 4)
	for h, r := range rows {
		c.Set(&models.Activation{Hook: h, Width: len(r), Data: r})
	}
	return c
}

// TestRankCells: cells come in the order of compare's relative difference,
// resid_pre.L+1 stands for resid_post.L once, ties go to the lower layer,
// and a note says when fewer than top cells exist.
func TestRankCells(t *testing.T) {
	h := func(k models.Kind, l int) models.Hook { return models.Hook{Kind: k, Layer: l} }
	a := cacheOf(map[models.Hook][]float32{
		h(models.ResidPost, 0): {1, 0}, h(models.ResidPre, 1): {1, 0},
		h(models.AttnOut, 0): {1, 0}, h(models.AttnOut, 1): {1, 0}, h(models.MLPOut, 1): {1, 0},
	})
	b := cacheOf(map[models.Hook][]float32{
		h(models.ResidPost, 0): {0, 1}, h(models.ResidPre, 1): {0, 1}, // rel 2·√2/2 = √2
		h(models.AttnOut, 0): {1, 1}, h(models.AttnOut, 1): {1, 1}, // rel 1/((1+√2)/2), tied
		h(models.MLPOut, 1): {1, 0}, // rel 0
	})
	hooks := models.SortHooks([]models.Hook{h(models.ResidPost, 0), h(models.ResidPre, 1), h(models.AttnOut, 0), h(models.AttnOut, 1), h(models.MLPOut, 1)})
	groups := [][]diff.PosPair{{{A: 0, B: 0}}}
	var notes []string
	cells, err := RankCells(a, b, hooks, groups, 10, &notes)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cells {
		got = append(got, c.Hook.Short())
	}
	// resid_pre.1 and resid_post.0 tie; the lower layer (resid_post.0)
	// is kept and resid_pre.1 dropped as the same activation
	if want := "[resid_post.0 attn_out.0 attn_out.1 mlp_out.1]"; fmt.Sprint(got) != want {
		t.Errorf("cells %v, want %s", got, want)
	}
	if math.Abs(cells[0].Rel-math.Sqrt2) > 1e-12 || cells[3].Rel != 0 {
		t.Errorf("rel %v ... %v", cells[0].Rel, cells[3].Rel)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "only 4 distinct") {
		t.Errorf("notes %q", notes)
	}
	notes = nil
	if cells, _ := RankCells(a, b, hooks, groups, 2, &notes); len(cells) != 2 || len(notes) != 0 {
		t.Errorf("top 2: %d cells, notes %q", len(cells), notes)
	}
}

// TestCompareVsPatch: the patch ranking is by |normalized|, and Spearman's
// correlation of rel_l2 with it is 1 when the rankings agree, −1 when they
// are reversed, and null for one cell.
func TestCompareVsPatch(t *testing.T) {
	cells := []Cell{{Hook: models.Hook{Kind: models.AttnOut, Layer: 0}, Rel: 3}, {Hook: models.Hook{Kind: models.AttnOut, Layer: 1}, Rel: 2}, {Hook: models.Hook{Kind: models.AttnOut, Layer: 2}, Rel: 1}}
	res := func(ns ...float64) []PatchedCell {
		var out []PatchedCell
		for _, n := range ns {
			out = append(out, PatchedCell{Normalized: n})
		}
		return out
	}
	for _, tc := range []struct {
		norm  []float64
		ranks string
		rho   float64
	}{
		{[]float64{0.9, -0.5, 0.1}, "[1 2 3]", 1},
		{[]float64{0.1, 0.5, -0.9}, "[3 2 1]", -1},
	} {
		fc := CompareVsPatch(cells, res(tc.norm...), 3)
		var ranks []int
		for _, c := range fc.Components {
			ranks = append(ranks, c.PatchRank)
		}
		if fmt.Sprint(ranks) != tc.ranks || fc.Spearman == nil || math.Abs(*fc.Spearman-tc.rho) > 1e-12 {
			t.Errorf("%v: ranks %v spearman %v; want %s %v", tc.norm, ranks, fc.Spearman, tc.ranks, tc.rho)
		}
	}
	if fc := CompareVsPatch(cells[:1], res(0.5), 1); fc.Spearman != nil {
		t.Errorf("one cell: spearman %v, want null", *fc.Spearman)
	}
}

// TestAnswerMetric checks the metric on hand-made logits.
func TestAnswerMetric(t *testing.T) {
	rows := []float32{0, 1, 2, 3 /* row 0 */, 3, 2, 1, 0 /* row 1 */}
	lp := func(row []float32, id int) float64 {
		s := 0.0
		for _, v := range row {
			s += math.Exp(float64(v))
		}
		return float64(row[id]) - math.Log(s)
	}
	s := AnswerMetric([]int32{3, 0}, -1)(rows, 4)
	// float64 arithmetic on exact small values: 1e-12
	if want := lp(rows[:4], 3) + lp(rows[4:], 0); math.Abs(s.Metric-want) > 1e-12 || s.LogitDiff != nil || math.Abs(s.AnswerProb-math.Exp(want)) > 1e-12 {
		t.Errorf("logprob metric %+v, want %v", s, want)
	}
	s = AnswerMetric([]int32{3, 0}, 1)(rows, 4)
	if s.LogitDiff == nil || *s.LogitDiff != 2 || s.Metric != 2 {
		t.Errorf("logit diff metric %+v, want 2", s)
	}
	if n := Normalized(0.5, -1, 2); n != 0.5 {
		t.Errorf("Normalized = %v", n)
	}
}
