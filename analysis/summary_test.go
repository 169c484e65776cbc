package analysis

import (
	"strings"
	"testing"
)

func toks(ids []int32, texts ...string) []Token {
	var out []Token
	for i, id := range ids {
		out = append(out, Token{Pos: i, ID: id, Text: texts[i], Piece: texts[i]})
	}
	return out
}

func lensLayer(layer int, ab, ba []int32, names map[int32]string) LensLayer {
	l := LensLayer{Layer: layer}
	for _, id := range ab {
		l.AMinusB = append(l.AMinusB, LensToken{ID: id, Piece: names[id]})
	}
	for _, id := range ba {
		l.BMinusA = append(l.BMinusA, LensToken{ID: id, Piece: names[id]})
	}
	return l
}

// girlBoy is a hand-made comparison shaped like the README's demo.
func girlBoy() *CompareResult {
	names := map[int32]string{10: "▁her", 11: "▁She", 12: "▁she", 20: "▁he", 21: "▁He", 22: "▁his", 30: "x", 31: "y"}
	r := &CompareResult{
		Positions: []PosPair{{A: 6, B: 6}},
		Prompts: [2]Prompt{
			{Tokens: toks([]int32{1, 5, 298, 315, 421, 426, 432}, "", " a", " g", "ir", "l", ".", ","),
				Top: []PredToken{{ID: 12, Piece: "▁she", Prob: 0.575}, {ID: 4, Piece: "▁a", Prob: 0.147}}},
			{Tokens: toks([]int32{1, 5, 268, 414, 422, 426, 432}, "", " a", " b", "o", "y", ".", ","),
				Top: []PredToken{{ID: 20, Piece: "▁he", Prob: 0.517}, {ID: 4, Piece: "▁a", Prob: 0.178}}},
		},
		Components: []Component{
			{Hook: "blocks.1.hook_attn_out", Layer: 1, Kind: "attn_out", RelL2: 1.2447},
			{Hook: "blocks.1.hook_resid_post", Layer: 1, Kind: "resid_post", RelL2: 0.5},
			{Hook: "blocks.0.hook_mlp_out", Layer: 0, Kind: "mlp_out", RelL2: 0.0826},
			{Hook: "blocks.0.hook_attn_out", Layer: 0, Kind: "attn_out", RelL2: 0.004}, // below the threshold
			{Hook: "blocks.0.hook_resid_post", Layer: 0, Kind: "resid_post", RelL2: 0.03},
			{Hook: "logits", Layer: -1, Kind: "logits", RelL2: 9}, // not a per-layer component
		},
		Lens: []LensLayer{
			lensLayer(0, []int32{30, 31}, []int32{31, 30}, names),
			lensLayer(1, []int32{30, 12}, []int32{21, 20}, names),
			lensLayer(2, []int32{10, 12, 11}, []int32{20, 21, 22}, names),
			lensLayer(3, []int32{10, 11, 12, 30}, []int32{20, 21, 22}, names),
		},
		Answers: []AnswerResult{{A: []AnswerScore{{ID: 12, Rank: 0}}, B: []AnswerScore{{ID: 12, Rank: 7}}}},
	}
	return r
}

func TestSummarize(t *testing.T) {
	s := Summarize(girlBoy())
	want := []string{
		`The prompts first differ at position 2 (" girl" vs " boy", 3 tokens each).`,
		`The difference enters at layer 0 (MLP) and is largest at the last position in layer 1's attention output (rel. 1.24, the largest of 5 components).`,
		`Read through the unembedding, A−B promotes ▁her ▁She ▁she (from layer 2 on) and B−A ▁he ▁He ▁his (from layer 1 on).`,
		`The prediction changes from "▁she" (0.57) to "▁he" (0.52); "▁she" drops from rank 0 to rank 7.`,
	}
	if got := s.Text; got != strings.Join(want, " ") {
		t.Errorf("summary:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if s.FirstDifference == nil || s.FirstDifference.Pos != 2 || s.FirstDifference.TokensA != 3 {
		t.Errorf("first difference %+v", s.FirstDifference)
	}
	if s.Enters == nil || s.Enters.Hook != "blocks.0.hook_mlp_out" {
		t.Errorf("enters %+v", s.Enters)
	}
	if s.Largest == nil || s.Largest.Hook != "blocks.1.hook_attn_out" || s.Largest.Of != 5 {
		t.Errorf("largest %+v", s.Largest)
	}
	if s.Lens == nil || s.Lens.FromLayerAB != 2 || s.Lens.FromLayerBA != 1 || s.Lens.LastLayer != 3 {
		t.Errorf("lens %+v", s.Lens)
	}
	if s.Prediction == nil || s.Prediction.RankOfTopA != 7 {
		t.Errorf("prediction %+v", s.Prediction)
	}
}

// Sentences whose numbers were not measured are left out.
func TestSummarizeLeavesOutUnmeasured(t *testing.T) {
	r := girlBoy()
	r.Answers = nil // the rank of "▁she" after B is not in B's top 2
	r.Lens = nil
	s := Summarize(r)
	if strings.Contains(s.Text, "drops") || strings.Contains(s.Text, "unembedding") {
		t.Errorf("summary states what was not measured: %s", s.Text)
	}
	if s.Prediction == nil || s.Prediction.RankOfTopA != -1 || !strings.Contains(s.Text, `changes from "▁she" (0.57) to "▁he" (0.52).`) {
		t.Errorf("prediction: %+v in %s", s.Prediction, s.Text)
	}
	// B's listed predictions give the rank when they hold A's top token.
	r.Prompts[1].Top = append(r.Prompts[1].Top, PredToken{ID: 12, Piece: "▁she", Prob: 0.01})
	if s := Summarize(r); s.Prediction.RankOfTopA != 2 {
		t.Errorf("rank from B's predictions: %+v", s.Prediction)
	}
	// Nothing above the threshold: said, not invented.
	for i := range r.Components {
		r.Components[i].RelL2 = 1e-4
	}
	if s := Summarize(r); s.Enters != nil || s.Largest != nil || !strings.Contains(s.Text, "No component differs") {
		t.Errorf("below threshold: %s", s.Text)
	}
}

func TestSummarizeIdentical(t *testing.T) {
	r := girlBoy()
	r.Prompts[1] = r.Prompts[0]
	s := Summarize(r)
	if !s.Identical || !strings.Contains(s.Text, "same tokens") || s.Largest != nil {
		t.Errorf("identical: %+v", s)
	}
}

func TestDifferingSpanLengths(t *testing.T) {
	a := toks([]int32{1, 2, 3, 9}, "", " a", " b", ".")
	b := toks([]int32{1, 2, 7, 8, 6, 9}, "", " a", " c", "d", "e", ".")
	d := differingSpan(a, b)
	if d == nil || d.Pos != 2 || d.TextA != " b" || d.TextB != " cde" || d.TokensA != 1 || d.TokensB != 3 {
		t.Errorf("span %+v", d)
	}
	// B extends A: the span is empty in A.
	d = differingSpan(a[:3], a)
	if d == nil || d.Pos != 3 || d.TokensA != 0 || d.TokensB != 1 {
		t.Errorf("prefix span %+v", d)
	}
}

// TestDifferingSpanImages: image positions read as one span per image, as
// in the token views, not as their (empty) texts.
func TestDifferingSpanImages(t *testing.T) {
	a := toks([]int32{1, 5, -1, -2, -3, -4, -5, 9}, "", " see", "", "", "", "", "", ".")
	for i := 2; i < 7; i++ {
		img := 1 + (i-2)/3 // positions 2-4 image 1, 5-6 image 2
		a[i].Image = &ImagePos{Image: img, Source: "x.png", Part: 1, Parts: 1, Row: i - 2, Rows: 5}
	}
	b := toks([]int32{1, 5, 6, 9}, "", " see", " cats", ".")
	d := differingSpan(a, b)
	if want := "[image 1: 3 positions][image 2: 2 positions]"; d == nil || d.TextA != want || d.TextB != " cats" || d.TokensA != 5 {
		t.Errorf("span %+v, want A %q", d, want)
	}
}

// TestSummarizeLensConsistency: a token named by the lens sentence must
// stay in the top of the difference lens for SummaryLensLayers consecutive
// layers up to the last; one layer is not enough.
func TestSummarizeLensConsistency(t *testing.T) {
	r := girlBoy()
	names := map[int32]string{10: "▁her", 20: "▁he", 30: "x", 31: "y"}
	r.Lens = []LensLayer{
		lensLayer(0, []int32{10}, []int32{20}, names),
		lensLayer(1, []int32{30}, []int32{31}, names), // a noisy layer breaks the runs
		lensLayer(2, []int32{10}, []int32{20}, names),
	}
	if s := Summarize(r); s.Lens != nil || strings.Contains(s.Text, "unembedding") {
		t.Errorf("tokens on the last layer only are named: %+v, %s", s.Lens, s.Text)
	}
	r.Lens[1] = lensLayer(1, []int32{10, 30}, []int32{31}, names)
	s := Summarize(r)
	if s.Lens == nil || len(s.Lens.AMinusB) != 1 || s.Lens.FromLayerAB != 0 || len(s.Lens.BMinusA) != 0 {
		t.Fatalf("lens %+v", s.Lens)
	}
	if !strings.Contains(s.Text, "A−B promotes ▁her (from layer 0 on).") {
		t.Errorf("lens sentence: %s", s.Text)
	}
}

// TestSummarizeBeforeDifference: comparing a position before the first
// differing token says so, and nothing else.
func TestSummarizeBeforeDifference(t *testing.T) {
	r := girlBoy()
	r.Positions = []PosPair{{A: 1, B: 1}}
	s := Summarize(r)
	if !s.BeforeDifference || !strings.Contains(s.Text, "differ only after the compared position (first at position 2") || s.Largest != nil {
		t.Errorf("before the difference: %+v", s)
	}
}
