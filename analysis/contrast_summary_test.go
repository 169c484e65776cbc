package analysis

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/models"
)

func f64(x float64) *float64 { return &x }

func lensToks(pieces ...string) []LensToken {
	var out []LensToken
	for i, p := range pieces {
		out = append(out, LensToken{ID: int32(i), Piece: p})
	}
	return out
}

// heShe is a hand-made contrast shaped like the he/she demo on
// stories260K (docs/contrast.md): 12 pairs, ranked by separation.
func heShe() *ContrastResult {
	comp := func(kind string, layer int, sep, held, sign float64) ContrastComp {
		return ContrastComp{Hook: fmt.Sprintf("blocks.%d.hook_%s", layer, kind), Short: fmt.Sprintf("%s.%d", kind, layer), Kind: kind, Layer: layer,
			Separation: f64(sep), HeldOut: f64(held), SignConsistency: f64(sign), MeanDiffNorm: 1}
	}
	r := &ContrastResult{Paired: true, A: ContrastSet{Prompts: 12, Rows: 12}, B: ContrastSet{Prompts: 12, Rows: 12},
		Components: []ContrastComp{
			comp("resid_post", 0, 17.599, 1, 1),
			comp("mlp_out", 1, 15.665, 1, 1),
			comp("resid_post", 3, 14.134, 1, 1),
			comp("attn_out", 3, 0.769, 0.625, 0.75),
			comp("resid_post", 4, 3.975, 0.958, 1),
		},
	}
	r.Components[0].Lens = &DirLens{MeanDiffTop: lensToks("ily", "▁she", "0", "1"), MeanDiffBottom: lensToks("ot", "ar", "▁he", "▁his")}
	return r
}

func TestSummarizeContrast(t *testing.T) {
	s := SummarizeContrast(heShe())
	want := []string{
		`A and B separate best at layer 0's residual stream (resid_post.0): Cohen's d = 17.6 along the mean difference, the largest of 5 components (in-sample; leave-one-out accuracy 1.00).`,
		`They are separable on held-out prompts (leave-one-out accuracy ≥ 0.9) from layer 0 on (resid_post.0: 1.00).`,
		`Read through the unembedding, the mean difference at resid_post.0 promotes ily ▁she 0 (toward A) and suppresses ot ar ▁he (toward B).`,
		`The pairs agree in sign: 12 of 12 pair differences (1.00) project positively on the mean difference at resid_post.0.`,
	}
	if s.Text != strings.Join(want, " ") {
		t.Errorf("summary:\n%s\nwant:\n%s", s.Text, strings.Join(want, "\n"))
	}
	if s.NoSeparation || s.Best == nil || s.Best.Hook != "blocks.0.hook_resid_post" || *s.Best.Separation != 17.599 || s.Best.Of != 5 {
		t.Errorf("best %+v", s.Best)
	}
	if sp := s.Separable; sp == nil || !sp.Separable || sp.FromLayer != 0 || !sp.EveryLaterLayer {
		t.Errorf("separable %+v", sp)
	}
	if l := s.Lens; l == nil || strings.Join(l.TowardA, " ") != "ily ▁she 0" || strings.Join(l.TowardB, " ") != "ot ar ▁he" {
		t.Errorf("lens %+v", l)
	}
	if sg := s.Sign; sg == nil || sg.Positive != 12 || sg.Pairs != 12 || !sg.Consistent {
		t.Errorf("sign %+v", sg)
	}
}

// TestSummarizeContrastThresholds: separability from a later layer, a
// layer after it that does not hold out, pairs that disagree in sign, and
// a lens read only where the direction holds out.
func TestSummarizeContrastThresholds(t *testing.T) {
	r := heShe()
	r.Components[0].HeldOut = f64(0.7)   // resid_post.0 no longer holds out
	r.Components[1].HeldOut = f64(0.875) // nor mlp_out.1
	r.Components[4].HeldOut = f64(0.5)   // layer 4 falls back
	r.Components[0].SignConsistency = f64(7.0 / 12)
	s := SummarizeContrast(r)
	for _, want := range []string{
		`first at layer 3 (resid_post.3: 1.00), but not at every later layer.`,
		`The pairs do not agree in sign: only 7 of 12 pair differences (0.58, below 0.9) project positively on the mean difference at resid_post.0`,
	} {
		if !strings.Contains(s.Text, want) {
			t.Errorf("summary lacks %q:\n%s", want, s.Text)
		}
	}
	if sp := s.Separable; sp.FromLayer != 3 || sp.EveryLaterLayer || sp.Hook != "resid_post.3" {
		t.Errorf("separable %+v", sp)
	}
	// resid_post.0 has the lens but does not hold out: no reading
	if s.Lens != nil || strings.Contains(s.Text, "unembedding") {
		t.Errorf("lens of a direction that does not hold out: %+v", s.Lens)
	}
	// nothing holds out
	for i := range r.Components {
		r.Components[i].HeldOut = f64(0.6)
	}
	r.Components[2].HeldOut = f64(0.71)
	s = SummarizeContrast(r)
	if sp := s.Separable; sp == nil || sp.Separable || sp.FromLayer != -1 || sp.Hook != "resid_post.3" ||
		!strings.Contains(s.Text, "No component separates them on held-out prompts: the best leave-one-out accuracy is 0.71 (resid_post.3), below 0.9.") {
		t.Errorf("not separable: %+v\n%s", sp, s.Text)
	}
	// unpaired sets, and held-out accuracy not measured: left out
	for i := range r.Components {
		r.Components[i].HeldOut, r.Components[i].SignConsistency = nil, nil
	}
	s = SummarizeContrast(r)
	if s.Separable != nil || s.Sign != nil || strings.Contains(s.Text, "held-out") || strings.Contains(s.Text, "sign") || strings.Contains(s.Text, "leave-one-out") {
		t.Errorf("unmeasured statistics in the summary: %s", s.Text)
	}
}

// Identical activations: every separation is 0, and the summary says so
// and stops; an infinite separation is named as such.
func TestSummarizeContrastNoSeparation(t *testing.T) {
	r := heShe()
	for i := range r.Components {
		r.Components[i].Separation = f64(0)
		r.Components[i].HeldOut = f64(0)
	}
	s := SummarizeContrast(r)
	if !s.NoSeparation || s.Best != nil || s.Separable != nil || !strings.Contains(s.Text, "no separation") {
		t.Errorf("identical sets: %+v", s)
	}

	r = heShe()
	r.Components[0].Separation = nil
	h := models.Hook{Kind: models.ResidPost, Layer: 0}
	r.Stats = map[models.Hook]*contrast.Stats{h: {Separation: math.Inf(1)}}
	s = SummarizeContrast(r)
	if s.Best == nil || !s.Best.Infinite || s.Best.Separation != nil || !strings.Contains(s.Text, "Cohen's d = ∞ (the sets do not spread)") {
		t.Errorf("infinite separation: %+v\n%s", s.Best, s.Text)
	}
	// an undefined separation (one row per set) is not a sentence
	r.Stats = nil
	if s = SummarizeContrast(r); s.Best != nil || strings.Contains(s.Text, "separate best") {
		t.Errorf("undefined separation: %s", s.Text)
	}
}
