package analysis

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// Thresholds of the contrast summary (docs/contrast.md, "The summary",
// says how they were chosen).
const (
	// SummarySeparable is the leave-one-out accuracy from which a
	// component is said to separate the sets on held-out prompts: with 12
	// prompts per set, at most 2 of 24 rows on the wrong side. Chance is
	// 0.5, and identical sets score near 0 (leaving a row out moves its
	// own set's mean away from it); rounding moves a projection by about
	// 1e-6 of the activations' norm, which flips only a row lying that
	// close to the midpoint.
	SummarySeparable = 0.9
	// SummarySignAgree is the sign consistency from which the pairs are
	// said to agree in sign: 11 of 12 pairs or more. With random signs,
	// 11 or 12 of 12 happen with probability 13/4096 = 0.003.
	SummarySignAgree = 0.9
)

// ContrastSummary says in words where and how the two sets differ, built
// only from what Contrast measured: a sentence whose numbers were not
// measured is left out, and so is its field.
type ContrastSummary struct {
	// Text is the summary as sentences.
	Text string `json:"text"`
	// NoSeparation is true when every mean difference is zero or float32
	// rounding: the sets give the same activations.
	NoSeparation bool `json:"no_separation"`
	// Best is the component with the largest separation.
	Best *ContrastBest `json:"best,omitempty"`
	// Separable is the first layer from which a component separates the
	// sets on held-out prompts.
	Separable *ContrastSeparable `json:"separable,omitempty"`
	// Lens is what the mean difference of the best separating component
	// reads as through the unembedding.
	Lens *ContrastSummaryLens `json:"lens,omitempty"`
	// Sign is the pairs' sign agreement at the best component (pairs
	// only).
	Sign *ContrastSign `json:"sign,omitempty"`
}

// ContrastBest is the component that separates the sets best.
type ContrastBest struct {
	Hook  string `json:"hook"`
	Short string `json:"short"`
	Kind  string `json:"kind"`
	Layer int    `json:"layer"`
	// Separation is Cohen's d; null when infinite (Infinite: the sets
	// differ without spread).
	Separation *float64 `json:"separation"`
	Infinite   bool     `json:"separation_infinite,omitempty"`
	// HeldOut is the component's leave-one-out accuracy (null when
	// undefined).
	HeldOut *float64 `json:"held_out_accuracy"`
	// Of is the number of components ranked.
	Of int `json:"of"`
}

// ContrastSeparable is where the sets become separable on held-out
// prompts.
type ContrastSeparable struct {
	// Threshold is SummarySeparable.
	Threshold float64 `json:"threshold"`
	// Separable is false when no component reaches Threshold; Hook and
	// HeldOut then name the component with the best held-out accuracy, and
	// FromLayer is -1.
	Separable bool   `json:"separable"`
	FromLayer int    `json:"from_layer"`
	Hook      string `json:"hook"`
	// HeldOut is Hook's leave-one-out accuracy.
	HeldOut float64 `json:"held_out_accuracy"`
	// EveryLaterLayer is true when every measured layer after FromLayer
	// has a component that reaches Threshold too.
	EveryLaterLayer bool `json:"every_later_layer"`
}

// ContrastSummaryLens is the logit lens of one component's mean difference.
type ContrastSummaryLens struct {
	Hook    string   `json:"hook"`
	TowardA []string `json:"toward_a"`
	TowardB []string `json:"toward_b"`
}

// ContrastSign is how many pairs' differences project positively on the
// mean difference.
type ContrastSign struct {
	Hook       string  `json:"hook"`
	Pairs      int     `json:"pairs"`
	Positive   int     `json:"positive"`
	Fraction   float64 `json:"fraction"`
	Threshold  float64 `json:"threshold"`
	Consistent bool    `json:"consistent"`
}

// SummarizeContrast builds the summary of a contrast. Components are in
// their ranked order (best separation first); res.Stats, when set, tells
// an infinite separation from an undefined one.
func SummarizeContrast(res *ContrastResult) *ContrastSummary {
	s := &ContrastSummary{}
	comps := res.Components
	if len(comps) == 0 {
		return s
	}
	var sentences []string
	if !slices.ContainsFunc(comps, func(c ContrastComp) bool { return c.Separation == nil || *c.Separation != 0 }) {
		s.NoSeparation = true
		s.Text = "A and B give the same activations at the chosen positions (every mean difference is zero or float32 rounding): no separation."
		return s
	}
	infinite := func(c *ContrastComp) bool {
		if c.Separation != nil || res.Stats == nil {
			return false
		}
		st := res.Stats[models.Hook{Kind: models.Kind(c.Kind), Layer: c.Layer}]
		return st != nil && math.IsInf(st.Separation, 1)
	}

	best := &comps[0]
	if best.Separation != nil || infinite(best) {
		s.Best = &ContrastBest{Hook: best.Hook, Short: best.Short, Kind: best.Kind, Layer: best.Layer,
			Separation: best.Separation, Infinite: infinite(best), HeldOut: best.HeldOut, Of: len(comps)}
		d := "d = ∞ (the sets do not spread)"
		if best.Separation != nil {
			d = fmt.Sprintf("d = %.3g", *best.Separation)
		}
		sent := fmt.Sprintf("A and B separate best at layer %d's %s (%s): Cohen's %s along the mean difference, the largest of %d components",
			best.Layer, kindWords(best.Kind), best.Short, d, len(comps))
		if best.HeldOut != nil {
			sent += fmt.Sprintf(" (in-sample; leave-one-out accuracy %.2f)", *best.HeldOut)
		}
		sentences = append(sentences, sent+".")
	}

	if sep := contrastSeparable(comps); sep != nil {
		s.Separable = sep
		switch {
		case !sep.Separable:
			sentences = append(sentences, fmt.Sprintf("No component separates them on held-out prompts: the best leave-one-out accuracy is %.2f (%s), below %.2g.",
				sep.HeldOut, sep.Hook, SummarySeparable))
		case sep.EveryLaterLayer:
			sentences = append(sentences, fmt.Sprintf("They are separable on held-out prompts (leave-one-out accuracy ≥ %.2g) from layer %d on (%s: %.2f).",
				SummarySeparable, sep.FromLayer, sep.Hook, sep.HeldOut))
		default:
			sentences = append(sentences, fmt.Sprintf("They are separable on held-out prompts (leave-one-out accuracy ≥ %.2g) first at layer %d (%s: %.2f), but not at every later layer.",
				SummarySeparable, sep.FromLayer, sep.Hook, sep.HeldOut))
		}
	}

	// the lens of the best component that holds out: a direction that
	// does not separate held-out prompts reads as noise
	for i := range comps {
		c := &comps[i]
		if c.HeldOut == nil || *c.HeldOut < SummarySeparable || c.Lens == nil || len(c.Lens.MeanDiffTop) == 0 {
			continue
		}
		l := &ContrastSummaryLens{Hook: c.Short}
		for _, t := range c.Lens.MeanDiffTop[:min(len(c.Lens.MeanDiffTop), SummaryLensTokens)] {
			l.TowardA = append(l.TowardA, t.Piece)
		}
		for _, t := range c.Lens.MeanDiffBottom[:min(len(c.Lens.MeanDiffBottom), SummaryLensTokens)] {
			l.TowardB = append(l.TowardB, t.Piece)
		}
		s.Lens = l
		sent := fmt.Sprintf("Read through the unembedding, the mean difference at %s promotes %s (toward A)", l.Hook, strings.Join(l.TowardA, " "))
		if len(l.TowardB) > 0 {
			sent += fmt.Sprintf(" and suppresses %s (toward B)", strings.Join(l.TowardB, " "))
		}
		sentences = append(sentences, sent+".")
		break
	}

	if s.Best != nil && best.SignConsistency != nil && res.A.Rows > 0 {
		f := *best.SignConsistency
		sg := &ContrastSign{Hook: best.Short, Pairs: res.A.Rows, Positive: int(math.Round(f * float64(res.A.Rows))),
			Fraction: f, Threshold: SummarySignAgree, Consistent: f >= SummarySignAgree}
		s.Sign = sg
		if sg.Consistent {
			sentences = append(sentences, fmt.Sprintf("The pairs agree in sign: %d of %d pair differences (%.2f) project positively on the mean difference at %s.",
				sg.Positive, sg.Pairs, f, sg.Hook))
		} else {
			sentences = append(sentences, fmt.Sprintf("The pairs do not agree in sign: only %d of %d pair differences (%.2f, below %.2g) project positively on the mean difference at %s, which hides pairs that differ the other way.",
				sg.Positive, sg.Pairs, f, SummarySignAgree, sg.Hook))
		}
	}
	s.Text = strings.Join(sentences, " ")
	return s
}

// contrastSeparable finds the first layer with a component whose held-out
// accuracy reaches SummarySeparable (at that layer the one with the best
// accuracy, ties in the ranked order), or the best component when none
// does; nil when no held-out accuracy was measured.
func contrastSeparable(comps []ContrastComp) *ContrastSeparable {
	bestAt := map[int]*ContrastComp{}
	var layers []int
	var best *ContrastComp
	for i := range comps {
		c := &comps[i]
		if c.HeldOut == nil {
			continue
		}
		if best == nil || *c.HeldOut > *best.HeldOut {
			best = c
		}
		if b := bestAt[c.Layer]; b == nil {
			bestAt[c.Layer] = c
			layers = append(layers, c.Layer)
		} else if *c.HeldOut > *b.HeldOut {
			bestAt[c.Layer] = c
		}
	}
	if best == nil {
		return nil
	}
	slices.Sort(layers)
	sep := &ContrastSeparable{Threshold: SummarySeparable, FromLayer: -1, Hook: best.Short, HeldOut: *best.HeldOut}
	for i, l := range layers {
		c := bestAt[l]
		if *c.HeldOut < SummarySeparable {
			continue
		}
		sep.Separable, sep.FromLayer, sep.Hook, sep.HeldOut = true, l, c.Short, *c.HeldOut
		sep.EveryLaterLayer = true
		for _, later := range layers[i+1:] {
			if *bestAt[later].HeldOut < SummarySeparable {
				sep.EveryLaterLayer = false
			}
		}
		break
	}
	return sep
}
