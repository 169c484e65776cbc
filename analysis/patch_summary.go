package analysis

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// Thresholds of the patching summary (docs/patch.md, "The summary", says
// how they were chosen).
const (
	// SummaryPatchCarry is the share of the clean−corrupt difference a
	// single cell must restore on its own (normalised ≥ 0.5) to be said to
	// carry the effect: at least half of it, "most". Rounding is far
	// below: the fast path's logits agree with a plain decode to about
	// 1e-5 relative, 1e-4 of the normalised scale on the demo pair
	// (logits near 10, a difference of 9.6).
	SummaryPatchCarry = 0.5
	// SummaryPatchNamed is how many residual-stream runs, writers of one
	// run, and other writers the summary names at most.
	SummaryPatchNamed = 3
	// SummarySpearmanAgree is the rank correlation between compare's
	// difference and the patching effect from which the two rankings are
	// said to agree: for 9 or more components, ρ ≥ 0.6 happens by chance
	// (independent rankings) with probability below 0.05 (0.048 at n = 9,
	// 0.037 at n = 10, by enumerating the permutations). Rounding (about
	// 1e-4 of the normalised scale) can only swap effects that agree to
	// that precision; one such swap moves ρ by at most 12/(n²−1), 0.12 at
	// n = 10.
	SummarySpearmanAgree = 0.6
	// SummarySpearmanMin is the fewest components for which the summary
	// judges agreement: below 9, ρ ≥ 0.6 happens by chance with
	// probability 0.057 (n = 8) to 0.175 (n = 5).
	SummarySpearmanMin = 9
)

// PatchSummary says in words where the patching effect lives, built only
// from what Patch measured: a sentence whose numbers were not measured is
// left out, and so is its field.
type PatchSummary struct {
	// Text is the summary as sentences.
	Text string `json:"text"`
	// Carry is SummaryPatchCarry: the normalised effect a single cell must
	// reach to be named.
	Carry float64 `json:"carry"`
	// Residual is the residual-stream kind the runs are read on
	// (resid_post, else resid_pre, else resid_mid; absent when none was
	// patched).
	Residual string `json:"residual,omitempty"`
	// Lives are the runs of consecutive layers in which the residual
	// stream at one position group carries the effect, in the order of
	// their first layer; at most SummaryPatchNamed, the largest.
	Lives []PatchRun `json:"lives,omitempty"`
	// MoreRuns is how many runs were found but not named.
	MoreRuns int `json:"more_runs,omitempty"`
	// OtherWriters are block outputs (attn_out, mlp_out, z) that carry the
	// effect on their own but write no run; largest first, at most
	// SummaryPatchNamed.
	OtherWriters []PatchCellRef `json:"other_writers,omitempty"`
	// Largest is the patched cell with the largest effect.
	Largest *PatchCellRef `json:"largest,omitempty"`
	// Agreement is how compare's ranking agrees with patching's
	// (--from-compare, when Spearman's ρ is defined).
	Agreement *PatchAgreement `json:"compare_agreement,omitempty"`
}

// PatchRun is a run of consecutive layers in which the residual stream at
// one position group restores at least SummaryPatchCarry.
type PatchRun struct {
	Positions []PatchPos `json:"positions"`
	// Token is the corrupt prompt's token there (one position only).
	Token     string `json:"token,omitempty"`
	FromLayer int    `json:"from_layer"`
	ToLayer   int    `json:"to_layer"`
	// Max is the largest effect in the run, at MaxHook.
	Max     float64 `json:"max"`
	MaxHook string  `json:"max_hook"`
	// Writers are the block outputs at the same positions, in the layers
	// that write the run's residual stream, that restore at least
	// SummaryPatchCarry on their own; largest first, at most
	// SummaryPatchNamed.
	Writers []PatchCellRef `json:"writers,omitempty"`
}

// PatchCellRef is one patched cell named by the summary.
type PatchCellRef struct {
	Hook       string     `json:"hook"`
	Kind       string     `json:"kind"`
	Layer      int        `json:"layer"`
	Positions  []PatchPos `json:"positions"`
	Normalized float64    `json:"normalized"`
}

// PatchAgreement is the verdict on compare's ranking against patching's.
type PatchAgreement struct {
	Spearman   float64 `json:"spearman"`
	Components int     `json:"components"`
	// Threshold is SummarySpearmanAgree, MinComponents SummarySpearmanMin.
	Threshold     float64 `json:"threshold"`
	MinComponents int     `json:"min_components"`
	// Verdict is "agree" (ρ ≥ Threshold), "disagree", or "too_few"
	// (fewer than MinComponents components).
	Verdict string `json:"verdict"`
}

// residualKinds are the residual-stream kinds, in the order the summary
// prefers them.
var residualKinds = []models.Kind{models.ResidPost, models.ResidPre, models.ResidMid}

// blockKinds are the kinds that a block writes into the residual stream.
var blockKinds = []models.Kind{models.Z, models.AttnOut, models.MLPOut}

// SummarizePatch builds the summary of a patching result.
func SummarizePatch(doc *PatchResult) *PatchSummary {
	s := &PatchSummary{Carry: SummaryPatchCarry}
	var sentences []string
	what := "the logit difference"
	if doc.Metric == "logprob" {
		what = "the log-probability difference"
	}
	ref := func(c *PatchedCell) PatchCellRef {
		return PatchCellRef{Hook: c.Hook, Kind: c.Kind, Layer: c.Layer, Positions: c.Positions, Normalized: c.Normalized}
	}
	for i := range doc.Results {
		c := &doc.Results[i]
		if !math.IsNaN(c.Normalized) && (s.Largest == nil || c.Normalized > s.Largest.Normalized) {
			r := ref(c)
			s.Largest = &r
		}
	}
	among := ""
	if fc := doc.FromCompare; fc != nil {
		among = fmt.Sprintf("Among the %d components patched, ", len(fc.Components))
	}
	// article opens a sentence, after "Among the N components patched"
	// with --from-compare
	article := func(sentence string) string {
		if among != "" {
			return among + strings.ToLower(sentence[:1]) + sentence[1:]
		}
		return sentence
	}

	for _, k := range residualKinds {
		if slices.Contains(doc.Kinds, string(k)) {
			s.Residual = string(k)
			break
		}
	}
	runs := patchRuns(doc, s.Residual)
	// writers of each run, and the block outputs that write none
	written := map[*PatchedCell]bool{}
	for i := range runs {
		r := &runs[i]
		var ws []*PatchedCell
		for j := range doc.Results {
			c := &doc.Results[j]
			if isBlock(c.Kind) && c.Normalized >= SummaryPatchCarry && samePositions(c.Positions, r.Positions) && writes(models.Kind(s.Residual), models.Kind(c.Kind), c.Layer, r.FromLayer, r.ToLayer) {
				ws = append(ws, c)
			}
		}
		slices.SortStableFunc(ws, func(x, y *PatchedCell) int { return cmp.Compare(y.Normalized, x.Normalized) })
		for _, c := range ws {
			written[c] = true
			if len(r.Writers) < SummaryPatchNamed {
				r.Writers = append(r.Writers, ref(c))
			}
		}
	}
	// the largest runs, in the order of their first layer
	if len(runs) > SummaryPatchNamed {
		slices.SortStableFunc(runs, func(x, y PatchRun) int { return cmp.Compare(y.Max, x.Max) })
		s.MoreRuns = len(runs) - SummaryPatchNamed
		runs = runs[:SummaryPatchNamed]
	}
	slices.SortStableFunc(runs, func(x, y PatchRun) int {
		return cmp.Or(cmp.Compare(x.FromLayer, y.FromLayer), cmp.Compare(x.Positions[0].Corrupt, y.Positions[0].Corrupt))
	})
	s.Lives = runs

	if len(runs) > 0 {
		var parts []string
		for _, r := range runs {
			layers := fmt.Sprintf("in layer %d (%.2f)", r.FromLayer, r.Max)
			if r.ToLayer > r.FromLayer {
				layers = fmt.Sprintf("through layers %d–%d (up to %.2f)", r.FromLayer, r.ToLayer, r.Max)
			}
			parts = append(parts, fmt.Sprintf("at %s %s", patchWhere(doc, r.Positions, true), layers))
		}
		if s.MoreRuns > 0 {
			parts = append(parts, fmt.Sprintf("%d more place%s", s.MoreRuns, plural(s.MoreRuns)))
		}
		sentences = append(sentences, fmt.Sprintf(article("The effect lives in the residual stream (%s cells that restore %.2g or more of %s on their own) %s."),
			s.Residual, SummaryPatchCarry, what, joinAnd(parts)))
		var by []string
		for _, r := range runs {
			if len(r.Writers) == 0 {
				continue
			}
			var ws []string
			for _, w := range r.Writers {
				ws = append(ws, fmt.Sprintf("%s (%.2f)", blockWords(w.Layer, w.Kind), w.Normalized))
			}
			by = append(by, fmt.Sprintf("at %s by %s", patchWhere(doc, r.Positions, false), joinAnd(ws)))
		}
		if len(by) > 0 {
			sentences = append(sentences, "It is written "+strings.Join(by, ", and ")+".")
		}
	}
	var others []*PatchedCell
	for i := range doc.Results {
		c := &doc.Results[i]
		if isBlock(c.Kind) && c.Normalized >= SummaryPatchCarry && !written[c] {
			others = append(others, c)
		}
	}
	slices.SortStableFunc(others, func(x, y *PatchedCell) int { return cmp.Compare(y.Normalized, x.Normalized) })
	var ws []string
	for _, c := range others[:min(len(others), SummaryPatchNamed)] {
		s.OtherWriters = append(s.OtherWriters, ref(c))
		ws = append(ws, fmt.Sprintf("%s at %s (%.2f)", blockWords(c.Layer, c.Kind), patchWhere(doc, c.Positions, false), c.Normalized))
	}
	if n := len(others) - len(ws); n > 0 {
		ws = append(ws, fmt.Sprintf("%d more", n))
	}
	largest := func() string {
		return fmt.Sprintf("the largest cell, %s at %s, restores %.2f", cellWords(s.Largest), patchWhere(doc, s.Largest.Positions, true), s.Largest.Normalized)
	}
	switch {
	case len(runs) > 0:
		if len(ws) > 0 {
			sentences = append(sentences, fmt.Sprintf("Other block outputs that restore %.2g or more of %s on their own: %s.", SummaryPatchCarry, what, joinAnd(ws)))
		}
	case s.Residual != "" && len(ws) > 0:
		sentences = append(sentences, fmt.Sprintf(article("No residual-stream cell (%s) restores %.2g or more of %s on its own; block outputs that do: %s."),
			s.Residual, SummaryPatchCarry, what, joinAnd(ws)))
	case s.Residual != "" && s.Largest != nil:
		sentences = append(sentences, fmt.Sprintf(article("No residual-stream cell (%s) restores %.2g or more of %s on its own; %s."),
			s.Residual, SummaryPatchCarry, what, largest()))
	case len(ws) > 0:
		sentences = append(sentences, fmt.Sprintf(article("Block outputs that restore %.2g or more of %s on their own: %s."), SummaryPatchCarry, what, joinAnd(ws)))
	case s.Largest != nil:
		sentences = append(sentences, fmt.Sprintf(article("No cell restores %.2g or more of %s on its own; %s."), SummaryPatchCarry, what, largest()))
	}

	if fc := doc.FromCompare; fc != nil && fc.Spearman != nil {
		n := len(fc.Components)
		a := &PatchAgreement{Spearman: *fc.Spearman, Components: n, Threshold: SummarySpearmanAgree, MinComponents: SummarySpearmanMin}
		switch {
		case n < SummarySpearmanMin:
			a.Verdict = "too_few"
			sentences = append(sentences, fmt.Sprintf("Compare's ranking and patching's correlate at Spearman's ρ = %.2f over %d components: too few to judge (ρ ≥ %.2g rules out chance only from %d components).",
				a.Spearman, n, SummarySpearmanAgree, SummarySpearmanMin))
		case a.Spearman >= SummarySpearmanAgree:
			a.Verdict = "agree"
			sentences = append(sentences, fmt.Sprintf("Compare's ranking agrees with patching's: Spearman's ρ = %.2f over %d components (≥ %.2g): the components that differ most are the ones that carry the answer.",
				a.Spearman, n, SummarySpearmanAgree))
		default:
			a.Verdict = "disagree"
			sentences = append(sentences, fmt.Sprintf("Compare's ranking disagrees with patching's: Spearman's ρ = %.2f over %d components (below %.2g): the largest differences are not all the ones that carry the answer.",
				a.Spearman, n, SummarySpearmanAgree))
		}
		s.Agreement = a
	}
	s.Text = strings.Join(sentences, " ")
	return s
}

// patchRuns returns, for every position group, the runs of consecutive
// layers whose cell of the residual kind restores at least
// SummaryPatchCarry, in the order of the results.
func patchRuns(doc *PatchResult, kind string) []PatchRun {
	if kind == "" {
		return nil
	}
	type group struct {
		pos   []PatchPos
		cells []*PatchedCell
	}
	var groups []*group
	byKey := map[string]*group{}
	for i := range doc.Results {
		c := &doc.Results[i]
		if c.Kind != kind || math.IsNaN(c.Normalized) {
			continue
		}
		k := fmt.Sprint(c.Positions)
		g := byKey[k]
		if g == nil {
			g = &group{pos: c.Positions}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.cells = append(g.cells, c)
	}
	var runs []PatchRun
	for _, g := range groups {
		slices.SortStableFunc(g.cells, func(x, y *PatchedCell) int { return cmp.Compare(x.Layer, y.Layer) })
		var cur *PatchRun
		for _, c := range g.cells {
			if c.Normalized < SummaryPatchCarry {
				cur = nil
				continue
			}
			// a layer that was not patched breaks the run
			if cur == nil || c.Layer != cur.ToLayer+1 {
				runs = append(runs, PatchRun{Positions: g.pos, FromLayer: c.Layer, ToLayer: c.Layer, Max: c.Normalized, MaxHook: c.Hook})
				cur = &runs[len(runs)-1]
				if len(g.pos) == 1 && g.pos[0].Corrupt < len(doc.Corrupt.Tokens) {
					cur.Token = doc.Corrupt.Tokens[g.pos[0].Corrupt].Text
				}
				continue
			}
			cur.ToLayer = c.Layer
			if c.Normalized > cur.Max {
				cur.Max, cur.MaxHook = c.Normalized, c.Hook
			}
		}
	}
	return runs
}

// writes reports whether the block output kind at layer writes the
// residual stream of kind res in layers from..to: resid_post.L holds the
// blocks up to L, resid_pre.L those up to L−1, resid_mid.L the attention
// of L and the MLPs up to L−1.
func writes(res, kind models.Kind, layer, from, to int) bool {
	lo, hi := from, to
	if res == models.ResidPre || res == models.ResidMid && kind == models.MLPOut {
		lo, hi = from-1, to-1
	}
	return layer >= lo && layer <= hi
}

func isBlock(kind string) bool {
	return slices.Contains(blockKinds, models.Kind(kind))
}

func samePositions(a, b []PatchPos) bool {
	return slices.Equal(a, b)
}

// blockWords names a block output: "layer 1's attention".
func blockWords(layer int, kind string) string {
	return fmt.Sprintf("layer %d's %s", layer, kindWords(kind))
}

// cellWords names a cell's component: "layer 1's attention" for a block
// output, else its short hook name ("resid_post.3").
func cellWords(c *PatchCellRef) string {
	if isBlock(c.Kind) {
		return blockWords(c.Layer, c.Kind)
	}
	return models.Hook{Kind: models.Kind(c.Kind), Layer: c.Layer}.Short()
}

// patchWhere names patched positions: one pair (with the corrupt token when
// token is set), or every position at once.
func patchWhere(doc *PatchResult, ps []PatchPos, token bool) string {
	if len(ps) != 1 {
		return "every position at once"
	}
	p := ps[0]
	where := fmt.Sprintf("position %d", p.Corrupt)
	if p.Clean != p.Corrupt {
		where = fmt.Sprintf("clean position %d → corrupt position %d", p.Clean, p.Corrupt)
	}
	if token && p.Corrupt < len(doc.Corrupt.Tokens) {
		where += fmt.Sprintf(" (%q)", doc.Corrupt.Tokens[p.Corrupt].Text)
	}
	return where
}

// joinAnd joins phrases as "a, b and c".
func joinAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
