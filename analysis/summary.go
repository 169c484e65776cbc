package analysis

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// Thresholds of the summary (docs/compare-json.md, "summary", says how they
// were chosen). All are relative L2 distances ‖a−b‖ / mean(‖a‖, ‖b‖) at the
// compared positions.
const (
	// SummaryEnterRel is the smallest relative difference that counts as
	// the difference having entered a component. Two runs of the same
	// tokens differ by at most ~1e-6 relative with an F32 KV cache and
	// ~1e-3 with an F16 one (lldiff's reference agreement tests measure
	// both); 0.01 is ten times the larger, and a one-word change moves
	// the first attention output at the last position by 0.05–0.3 on
	// every model we have measured.
	SummaryEnterRel = 0.01
	// SummaryLensTokens is how many lens tokens of A−B (and B−A) the
	// summary names at most.
	SummaryLensTokens = 3
	// SummaryLensLayers is how many consecutive layers, up to the last, a
	// token must stay among the top tokens of the difference lens to be
	// named: one noisy layer does not decide what a difference "means".
	SummaryLensLayers = 2
)

// Summary says in words what differs between A and B, built only from
// what Compare measured: a sentence whose numbers were not measured (no
// answer scored, a token outside the listed predictions) is left out.
type Summary struct {
	// Text is the summary as sentences.
	Text string `json:"text"`
	// Identical is true when A and B are the same tokens.
	Identical bool `json:"identical"`
	// BeforeDifference is true when every compared position comes before
	// the first differing token (nothing can differ there).
	BeforeDifference bool `json:"before_difference,omitempty"`
	// FirstDifference is where the token sequences first differ.
	FirstDifference *SummaryDiff `json:"first_difference,omitempty"`
	// Enters is the first component, in the order the model computes
	// them, whose difference at the compared positions reaches
	// SummaryEnterRel.
	Enters *SummaryComponent `json:"enters,omitempty"`
	// Largest is the component with the largest relative difference.
	Largest *SummaryComponent `json:"largest,omitempty"`
	// Lens is what the logit lens of the differences reads.
	Lens *SummaryLens `json:"lens,omitempty"`
	// Prediction is how the top prediction changes.
	Prediction *SummaryPrediction `json:"prediction,omitempty"`
}

// SummaryDiff is the differing span of the two prompts: the tokens between
// their common prefix and their common suffix.
type SummaryDiff struct {
	Pos     int    `json:"pos"`
	TextA   string `json:"text_a"`
	TextB   string `json:"text_b"`
	TokensA int    `json:"tokens_a"`
	TokensB int    `json:"tokens_b"`
}

// SummaryComponent is one component named by the summary.
type SummaryComponent struct {
	Hook  string  `json:"hook"`
	Layer int     `json:"layer"`
	Kind  string  `json:"kind"`
	RelL2 float64 `json:"rel_l2"`
	// Of is the number of components compared (Largest only).
	Of int `json:"of,omitempty"`
}

// SummaryLens is the reading of the logit lens of A−B and B−A: the last
// layer's top tokens, and the first layer from which the first of them is
// among the top tokens of every later layer.
type SummaryLens struct {
	AMinusB     []string `json:"a_minus_b"`
	BMinusA     []string `json:"b_minus_a"`
	FromLayerAB int      `json:"from_layer_a_minus_b"`
	FromLayerBA int      `json:"from_layer_b_minus_a"`
	LastLayer   int      `json:"last_layer"`
}

// SummaryPrediction is the top prediction after each prompt, and where A's
// top token ranks after B (-1 when that rank was not measured).
type SummaryPrediction struct {
	TopA       string  `json:"top_a"`
	ProbA      float64 `json:"prob_a"`
	TopB       string  `json:"top_b"`
	ProbB      float64 `json:"prob_b"`
	RankOfTopA int     `json:"rank_of_top_a_in_b"`
}

// kindOrder is the order in which a block computes its hooks.
var kindOrder = map[string]int{}

func init() {
	for i, k := range models.LayerKinds {
		kindOrder[string(k)] = i
	}
}

// kindWords names a hook kind in a sentence.
func kindWords(kind string) string {
	switch models.Kind(kind) {
	case models.AttnOut:
		return "attention"
	case models.MLPOut:
		return "MLP"
	case models.ResidPre:
		return "residual stream before the block"
	case models.ResidMid:
		return "residual stream after attention"
	case models.ResidPost:
		return "residual stream"
	case models.Z:
		return "attention heads' values"
	}
	return kind
}

// Summarize builds the summary of a comparison.
func Summarize(r *CompareResult) *Summary {
	s := &Summary{}
	var sentences []string
	a, b := r.Prompts[0].Tokens, r.Prompts[1].Tokens
	if tokenIDsEqual(a, b) {
		s.Identical = true
		sentences = append(sentences, "A and B are the same tokens: nothing differs (every difference below is exactly zero).")
		s.Text = strings.Join(sentences, " ")
		return s
	}
	if d := differingSpan(a, b); d != nil {
		s.FirstDifference = d
		before := len(r.Positions) > 0
		for _, p := range r.Positions {
			if p.A >= d.Pos || p.B >= d.Pos {
				before = false
			}
		}
		if before {
			s.BeforeDifference = true
			sentences = append(sentences, fmt.Sprintf("The prompts differ only after the compared position%s (first at position %d, %q vs %q): attention is causal, so nothing can differ there yet.",
				plural(len(r.Positions)), d.Pos, d.TextA, d.TextB))
			s.Text = strings.Join(sentences, " ")
			return s
		}
		each := fmt.Sprintf("%d and %d tokens", d.TokensA, d.TokensB)
		if d.TokensA == d.TokensB {
			each = fmt.Sprintf("%d token%s each", d.TokensA, plural(d.TokensA))
		}
		sentences = append(sentences, fmt.Sprintf("The prompts first differ at position %d (%q vs %q, %s).", d.Pos, d.TextA, d.TextB, each))
	}

	// Components in the order the model computes them.
	var comps []Component
	for _, c := range r.Components {
		if _, ok := kindOrder[c.Kind]; ok && c.Layer >= 0 && !math.IsNaN(c.RelL2) {
			comps = append(comps, c)
		}
	}
	slices.SortStableFunc(comps, func(x, y Component) int {
		if x.Layer != y.Layer {
			return x.Layer - y.Layer
		}
		return kindOrder[x.Kind] - kindOrder[y.Kind]
	})
	var parts []string
	for _, c := range comps {
		if c.RelL2 >= SummaryEnterRel {
			s.Enters = &SummaryComponent{Hook: c.Hook, Layer: c.Layer, Kind: c.Kind, RelL2: c.RelL2}
			parts = append(parts, fmt.Sprintf("The difference enters at layer %d (%s)", c.Layer, kindWords(c.Kind)))
			break
		}
	}
	if len(comps) > 0 {
		best := comps[0]
		for _, c := range comps[1:] {
			if c.RelL2 > best.RelL2 {
				best = c
			}
		}
		if best.RelL2 >= SummaryEnterRel {
			s.Largest = &SummaryComponent{Hook: best.Hook, Layer: best.Layer, Kind: best.Kind, RelL2: best.RelL2, Of: len(comps)}
			at := "the compared position"
			if len(r.Positions) > 1 {
				at = "the compared positions"
			} else if len(r.Positions) == 1 && r.Positions[0].A == len(a)-1 && r.Positions[0].B == len(b)-1 {
				at = "the last position"
			}
			what := fmt.Sprintf("layer %d's %s", best.Layer, kindWords(best.Kind))
			if models.Kind(best.Kind) == models.AttnOut || models.Kind(best.Kind) == models.MLPOut {
				what += " output"
			}
			parts = append(parts, fmt.Sprintf("is largest at %s in %s (rel. %.2f, the largest of %d components)", at, what, best.RelL2, len(comps)))
		}
	}
	if len(parts) == 0 && len(comps) > 0 {
		sentences = append(sentences, fmt.Sprintf("No component differs by %.2g or more (relative) at the compared positions.", SummaryEnterRel))
	} else if len(parts) > 0 {
		sentences = append(sentences, strings.Join(parts, " and ")+".")
	}

	if l := summarizeLens(r.Lens); l != nil {
		s.Lens = l
		from := func(layer int) string { return fmt.Sprintf("from layer %d on", layer) }
		var reads []string
		if len(l.AMinusB) > 0 {
			reads = append(reads, fmt.Sprintf("A−B promotes %s (%s)", strings.Join(l.AMinusB, " "), from(l.FromLayerAB)))
		}
		if len(l.BMinusA) > 0 {
			reads = append(reads, fmt.Sprintf("B−A %s (%s)", strings.Join(l.BMinusA, " "), from(l.FromLayerBA)))
		}
		sentences = append(sentences, "Read through the unembedding, "+strings.Join(reads, " and ")+".")
	}

	if p := summarizePrediction(r); p != nil {
		s.Prediction = p
		if p.TopA == p.TopB {
			sentences = append(sentences, fmt.Sprintf("Both predict %q (%.2f after A, %.2f after B).", p.TopA, p.ProbA, p.ProbB))
		} else {
			sent := fmt.Sprintf("The prediction changes from %q (%.2f) to %q (%.2f)", p.TopA, p.ProbA, p.TopB, p.ProbB)
			if p.RankOfTopA >= 0 {
				sent += fmt.Sprintf("; %q drops from rank 0 to rank %d", p.TopA, p.RankOfTopA)
			}
			sentences = append(sentences, sent+".")
		}
	}
	s.Text = strings.Join(sentences, " ")
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func tokenIDsEqual(a, b []Token) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID {
			return false
		}
	}
	return true
}

// differingSpan returns the tokens between the common prefix and the common
// suffix of a and b (nil when they are equal).
func differingSpan(a, b []Token) *SummaryDiff {
	p := 0
	for p < len(a) && p < len(b) && a[p].ID == b[p].ID {
		p++
	}
	if p == len(a) && p == len(b) {
		return nil
	}
	sfx := 0
	for sfx < len(a)-p && sfx < len(b)-p && a[len(a)-1-sfx].ID == b[len(b)-1-sfx].ID {
		sfx++
	}
	text := func(ts []Token) string {
		var sb strings.Builder
		for i := 0; i < len(ts); i++ {
			t := ts[i]
			if t.Image == nil {
				sb.WriteString(t.Text)
				continue
			}
			// a run of one image's positions reads as one span, as in
			// the token views
			n := 1
			for i+n < len(ts) && ts[i+n].Image != nil && ts[i+n].Image.Image == t.Image.Image {
				n++
			}
			fmt.Fprintf(&sb, "[image %d: %d position%s]", t.Image.Image, n, plural(n))
			i += n - 1
		}
		return sb.String()
	}
	sa, sb := a[p:len(a)-sfx], b[p:len(b)-sfx]
	return &SummaryDiff{Pos: p, TextA: text(sa), TextB: text(sb), TokensA: len(sa), TokensB: len(sb)}
}

// summarizeLens reads the lens of the differences: the tokens that stay
// among the top tokens of A−B (B−A) for at least SummaryLensLayers
// consecutive layers up to the last, in the last layer's order, and the
// first layer from which the first of them stays there. It returns nil when
// no token of either side stays that long.
func summarizeLens(ls []LensLayer) *SummaryLens {
	if len(ls) < SummaryLensLayers {
		return nil
	}
	last := ls[len(ls)-1]
	// from returns the first layer of the run of layers, ending at the
	// last, whose top tokens hold id.
	from := func(get func(LensLayer) []LensToken, id int32) (layer, n int) {
		layer = last.Layer
		for i := len(ls) - 1; i >= 0; i-- {
			if !slices.ContainsFunc(get(ls[i]), func(t LensToken) bool { return t.ID == id }) {
				break
			}
			layer, n = ls[i].Layer, n+1
		}
		return layer, n
	}
	stable := func(get func(LensLayer) []LensToken) ([]string, int) {
		var names []string
		first := -1
		for _, t := range get(last) {
			l, n := from(get, t.ID)
			if n < SummaryLensLayers {
				continue
			}
			if first < 0 {
				first = l
			}
			if len(names) < SummaryLensTokens {
				names = append(names, t.Piece)
			}
		}
		return names, first
	}
	ab, fromAB := stable(func(l LensLayer) []LensToken { return l.AMinusB })
	ba, fromBA := stable(func(l LensLayer) []LensToken { return l.BMinusA })
	if len(ab) == 0 && len(ba) == 0 {
		return nil
	}
	return &SummaryLens{AMinusB: ab, BMinusA: ba, FromLayerAB: fromAB, FromLayerBA: fromBA, LastLayer: last.Layer}
}

// summarizePrediction compares the top predictions; A's top token's rank
// after B comes from B's listed predictions or a scored answer.
func summarizePrediction(r *CompareResult) *SummaryPrediction {
	ta, tb := r.Prompts[0].Top, r.Prompts[1].Top
	if len(ta) == 0 || len(tb) == 0 {
		return nil
	}
	p := &SummaryPrediction{TopA: ta[0].Piece, ProbA: ta[0].Prob, TopB: tb[0].Piece, ProbB: tb[0].Prob, RankOfTopA: -1}
	if ta[0].ID == tb[0].ID {
		p.TopB = p.TopA
		return p
	}
	for i, t := range tb {
		if t.ID == ta[0].ID {
			p.RankOfTopA = i
		}
	}
	if p.RankOfTopA < 0 {
		for _, ans := range r.Answers {
			if len(ans.A) > 0 && len(ans.B) > 0 && ans.A[0].ID == ta[0].ID && ans.B[0].ID == ta[0].ID {
				p.RankOfTopA = ans.B[0].Rank
			}
		}
	}
	return p
}
