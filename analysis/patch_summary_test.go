package analysis

import (
	"fmt"
	"strings"
	"testing"
)

// girlBoyPatch is a hand-made patching grid shaped like the demo pair on
// stories260K (docs/patch.md): normalised effects at corrupt positions
// 10..16 ("▁b", "o", "y", ".", "▁One", "▁day", ","), 0 before them.
func girlBoyPatch() *PatchResult {
	texts := []string{"", "Once", " upon", " a", " time", ",", " there", " was", " a", " little", " b", "o", "y", ".", " One", " day", ","}
	doc := &PatchResult{Metric: "logit_diff", Positions: "each",
		Kinds: []string{"attn_out", "mlp_out", "resid_post"}, Layers: []int{0, 1, 2, 3, 4}}
	for i, t := range texts {
		doc.Corrupt.Tokens = append(doc.Corrupt.Tokens, Token{Pos: i, ID: int32(100 + i), Text: t, Piece: t})
	}
	grid := map[string][5][7]float64{
		"attn_out": {
			{-0.005, -0.119, 0.240, 0.002, 0.002, -0.004, -0.008},
			{-0.005, -0.192, 0.573, 0.025, 0, 0, -0.004},
			{0.002, 0.002, 0.014, 0.044, 0.004, 0, 0.047},
			{0.001, 0.001, -0.010, 0.022, -0.001, 0.001, -0.014},
			{0, 0, 0, 0, 0, 0, 0.990},
		},
		"mlp_out": {
			{-0.095, 0.134, -0.065, -0.002, 0.001, 0.005, -0.004},
			{-0.006, 0.061, 0.587, 0.020, 0, 0.001, -0.002},
			{0.003, 0.001, 0.804, 0.003, 0.001, 0, 0.011},
			{0.007, 0.001, 0.492, 0.035, 0.002, 0, -0.016},
			{0, 0, 0, 0, 0, 0, 0.470},
		},
		"resid_post": {
			{-0.111, 0.544, 0.509, 0.002, 0.002, -0.004, -0.008},
			{0.004, 0.057, 0.934, 0.028, 0, -0.001, -0.010},
			{-0.009, 0.016, 0.957, 0.066, 0.004, -0.002, 0.039},
			{0.025, 0.002, 0.949, 0.068, 0.005, 0, 0.032},
			{0, 0, 0, 0, 0, 0, 1.000},
		},
	}
	for _, kind := range doc.Kinds {
		for l := range 5 {
			for p := range 17 {
				v := 0.0
				if p >= 10 {
					v = grid[kind][l][p-10]
				}
				doc.Results = append(doc.Results, PatchedCell{Hook: fmt.Sprintf("blocks.%d.%s", l, kind), Short: fmt.Sprintf("%s.%d", kind, l),
					Kind: kind, Layer: l, Positions: []PatchPos{{Clean: p, Corrupt: p}}, Normalized: v})
			}
		}
	}
	return doc
}

func TestSummarizePatch(t *testing.T) {
	s := SummarizePatch(girlBoyPatch())
	want := []string{
		`The effect lives in the residual stream (resid_post cells that restore 0.5 or more of the logit difference on their own) at position 11 ("o") in layer 0 (0.54), at position 12 ("y") through layers 0–3 (up to 0.96) and at position 16 (",") in layer 4 (1.00).`,
		`It is written at position 12 by layer 2's MLP (0.80), layer 1's MLP (0.59) and layer 1's attention (0.57), and at position 16 by layer 4's attention (0.99).`,
	}
	if s.Text != strings.Join(want, " ") {
		t.Errorf("summary:\n%s\nwant:\n%s", s.Text, strings.Join(want, "\n"))
	}
	if s.Residual != "resid_post" || len(s.Lives) != 3 || s.MoreRuns != 0 || len(s.OtherWriters) != 0 || s.Agreement != nil {
		t.Fatalf("summary %+v", s)
	}
	r := s.Lives[1]
	if r.Positions[0].Corrupt != 12 || r.Token != "y" || r.FromLayer != 0 || r.ToLayer != 3 || r.Max != 0.957 || r.MaxHook != "blocks.2.resid_post" || len(r.Writers) != 3 {
		t.Errorf("run at 12: %+v", r)
	}
	if s.Largest == nil || s.Largest.Hook != "blocks.4.resid_post" || s.Largest.Normalized != 1 {
		t.Errorf("largest %+v", s.Largest)
	}
}

// A layer that was not patched, or a cell below SummaryPatchCarry, breaks
// a run; a block output that writes no named run is named on its own.
func TestSummarizePatchRuns(t *testing.T) {
	doc := girlBoyPatch()
	var kept []PatchedCell
	for _, c := range doc.Results {
		if c.Layer != 2 {
			kept = append(kept, c)
		}
	}
	doc.Results, doc.Layers = kept, []int{0, 1, 3, 4}
	s := SummarizePatch(doc)
	var spans []string
	for _, r := range s.Lives {
		spans = append(spans, fmt.Sprintf("%d:%d-%d", r.Positions[0].Corrupt, r.FromLayer, r.ToLayer))
	}
	// position 12 now runs 0–1 and 3 (layer 2 missing): 4 runs, the
	// largest 3 named (position 11 at 0.54 is left out)
	if got := strings.Join(spans, " "); got != "12:0-1 12:3-3 16:4-4" || s.MoreRuns != 1 || !strings.Contains(s.Text, "and 1 more place.") {
		t.Errorf("runs %s (more %d): %s", got, s.MoreRuns, s.Text)
	}
	// without the residual stream, the block outputs speak for themselves
	doc = girlBoyPatch()
	doc.Kinds = []string{"attn_out", "mlp_out"}
	kept = nil
	for _, c := range doc.Results {
		if c.Kind != "resid_post" {
			kept = append(kept, c)
		}
	}
	doc.Results = kept
	s = SummarizePatch(doc)
	want := `Block outputs that restore 0.5 or more of the logit difference on their own: layer 4's attention at position 16 (0.99), layer 2's MLP at position 12 (0.80), layer 1's MLP at position 12 (0.59) and 1 more.`
	if s.Residual != "" || len(s.Lives) != 0 || len(s.OtherWriters) != 3 || s.Text != want {
		t.Errorf("block outputs only: %+v\n%s\nwant\n%s", s, s.Text, want)
	}
}

// Nothing reaches the threshold: said, with the largest cell, not
// invented.
func TestSummarizePatchSpread(t *testing.T) {
	doc := girlBoyPatch()
	doc.Metric = "logprob"
	for i := range doc.Results {
		doc.Results[i].Normalized *= 0.4
	}
	s := SummarizePatch(doc)
	want := `No residual-stream cell (resid_post) restores 0.5 or more of the log-probability difference on its own; the largest cell, resid_post.4 at position 16 (","), restores 0.40.`
	if len(s.Lives) != 0 || s.Text != want {
		t.Errorf("spread:\n%s\nwant\n%s", s.Text, want)
	}
	if strings.Contains(s.Text, "written") {
		t.Errorf("writers named without runs: %s", s.Text)
	}
	// the residual stream below the threshold, block outputs above it:
	// they are named instead of the largest cell
	doc = girlBoyPatch()
	for i := range doc.Results {
		if doc.Results[i].Kind == "resid_post" {
			doc.Results[i].Normalized *= 0.4
		}
	}
	s = SummarizePatch(doc)
	want = `No residual-stream cell (resid_post) restores 0.5 or more of the logit difference on its own; block outputs that do: layer 4's attention at position 16 (0.99), layer 2's MLP at position 12 (0.80), layer 1's MLP at position 12 (0.59) and 1 more.`
	if s.Text != want || len(s.OtherWriters) != 3 {
		t.Errorf("block outputs without runs:\n%s\nwant\n%s", s.Text, want)
	}
}

// --pos all: one position group of every pair.
func TestSummarizePatchAll(t *testing.T) {
	doc := &PatchResult{Metric: "logit_diff", Positions: "all", Kinds: []string{"resid_pre", "attn_out"}, Layers: []int{0, 1, 2}}
	all := []PatchPos{{0, 0}, {1, 1}, {2, 2}}
	for l, v := range []float64{1, 1, 0.98} {
		doc.Results = append(doc.Results, PatchedCell{Hook: fmt.Sprintf("blocks.%d.hook_resid_pre", l), Kind: "resid_pre", Layer: l, Positions: all, Normalized: v})
	}
	for l, v := range []float64{0.1, 0.7, 0.2} {
		doc.Results = append(doc.Results, PatchedCell{Hook: fmt.Sprintf("blocks.%d.hook_attn_out", l), Kind: "attn_out", Layer: l, Positions: all, Normalized: v})
	}
	s := SummarizePatch(doc)
	// resid_pre.0..2 hold blocks up to 1: attention 1 writes the run
	want := `The effect lives in the residual stream (resid_pre cells that restore 0.5 or more of the logit difference on their own) at every position at once through layers 0–2 (up to 1.00). It is written at every position at once by layer 1's attention (0.70).`
	if s.Text != want {
		t.Errorf("all:\n%s\nwant\n%s", s.Text, want)
	}
}

func TestSummarizePatchAgreement(t *testing.T) {
	for _, tc := range []struct {
		rho     float64
		n       int
		verdict string
		text    string
	}{
		{0.38, 10, "disagree", "Compare's ranking disagrees with patching's: Spearman's ρ = 0.38 over 10 components (below 0.6)"},
		{0.6, 10, "agree", "Compare's ranking agrees with patching's: Spearman's ρ = 0.60 over 10 components (≥ 0.6)"},
		{0.9, 8, "too_few", "correlate at Spearman's ρ = 0.90 over 8 components: too few to judge (ρ ≥ 0.6 rules out chance only from 9 components)"},
	} {
		t.Run(tc.verdict, func(t *testing.T) {
			doc := girlBoyPatch()
			rho := tc.rho
			doc.FromCompare = &FromCompare{Top: tc.n, Spearman: &rho, Components: make([]CompareRanked, tc.n)}
			s := SummarizePatch(doc)
			if s.Agreement == nil || s.Agreement.Verdict != tc.verdict || s.Agreement.Spearman != tc.rho || s.Agreement.Components != tc.n {
				t.Fatalf("agreement %+v", s.Agreement)
			}
			if !strings.Contains(s.Text, tc.text) || !strings.HasPrefix(s.Text, fmt.Sprintf("Among the %d components patched, the effect lives", tc.n)) {
				t.Errorf("text %s\nlacks %s", s.Text, tc.text)
			}
		})
	}
	// an undefined ρ is not a sentence
	doc := girlBoyPatch()
	doc.FromCompare = &FromCompare{Top: 1, Components: make([]CompareRanked, 1)}
	if s := SummarizePatch(doc); s.Agreement != nil || strings.Contains(s.Text, "Spearman") {
		t.Errorf("undefined ρ: %+v %s", s.Agreement, s.Text)
	}
}
