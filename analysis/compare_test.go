package analysis

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/models"
)

const (
	promptGirl = "Once upon a time, there was a little girl. One day,"
	promptBoy  = "Once upon a time, there was a little boy. One day,"
)

func compareOpts() CompareOptions {
	return CompareOptions{
		Model: "m", A: promptGirl, B: promptBoy, Positions: "last",
		Kinds: []models.Kind{models.ResidPost, models.ResidMid, models.AttnOut, models.MLPOut},
		Sort:  "rel", TopK: 5, LensK: 5, Neurons: 10, Lens: models.LensNorm, Answers: []string{" she", " he"},
	}
}

// TestCompare runs Compare on stories260K and checks what follows from the
// definitions, on every engine: one component per layer and kind ranked by
// rel_l2, the last layer's lens (through the model's own final norm) equal
// to the model's prediction, answer probabilities that are the softmax of
// the logits, and the story's pronouns.
func TestCompare(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		o := compareOpts()
		r, err := Compare(e, o)
		if err != nil {
			t.Fatal(err)
		}
		nl := e.ModelInfo().NLayer
		if len(r.Components) != nl*len(o.Kinds) {
			t.Fatalf("%d components, want %d", len(r.Components), nl*len(o.Kinds))
		}
		if !slices.IsSortedFunc(r.Components, func(a, b Component) int { return -cmpFloat(a.RelL2, b.RelL2) }) {
			t.Error("components not sorted by rel_l2, largest first")
		}
		for _, c := range r.Components {
			// rel_l2 is l2 / mean(norm_a, norm_b); 1e-12 is float64 rounding
			if want := c.L2 / ((c.NormA + c.NormB) / 2); math.Abs(c.RelL2-want) > 1e-12*want {
				t.Errorf("%s: rel_l2 %v, l2/mean norm %v", c.Hook, c.RelL2, want)
			}
		}
		if len(r.Layers) != nl {
			t.Errorf("%d layer rows, want %d", len(r.Layers), nl)
		}
		if r.Prompts[0].Top[0].Piece != "▁she" || r.Prompts[1].Top[0].Piece != "▁he" {
			t.Errorf("predictions %v / %v, want ▁she / ▁he", r.Prompts[0].Top[0], r.Prompts[1].Top[0])
		}
		last := r.Lens[nl-1]
		if last.A[0].ID != r.Prompts[0].Top[0].ID || last.B[0].ID != r.Prompts[1].Top[0].ID {
			t.Errorf("last layer's lens top-1 %v / %v differs from the predictions", last.A[0], last.B[0])
		}
		// the lens in norm mode is the model's own unembedding: the logit
		// of the top token agrees with the prediction to float32 rounding
		// of a 64-wide norm and a 512-row product (1e-4 relative)
		if a, p := last.A[0].Value, r.Prompts[0].Top[0].Logit; math.Abs(a-p) > 1e-4*math.Abs(p) {
			t.Errorf("lens logit %v, prediction logit %v", a, p)
		}
		for _, l := range r.Lens {
			if len(l.AMinusB) != o.LensK || l.AMinusB[0].Value < l.AMinusB[len(l.AMinusB)-1].Value || l.BMinusA[0].Value < 0 {
				t.Errorf("layer %d: a_minus_b %v b_minus_a %v", l.Layer, l.AMinusB, l.BMinusA)
			}
		}
		if r.Neurons == nil || len(r.Neurons.Neurons) != o.Neurons || r.Neurons.Hook != r.Components[0].Hook {
			t.Fatalf("neurons %+v, want %d of %s", r.Neurons, o.Neurons, r.Components[0].Hook)
		}
		if len(r.Answers) != 2 {
			t.Fatalf("%d answers", len(r.Answers))
		}
		she := r.Answers[0]
		if len(she.A) != 1 || she.A[0].ID != r.Prompts[0].Top[0].ID || she.A[0].Rank != 0 {
			t.Errorf("answer \" she\" after A: %+v, want the top prediction at rank 0", she.A)
		}
		// the answer's probability is the prediction's (same logits row)
		if p := r.Prompts[0].Top[0].Prob; math.Abs(she.A[0].Prob-p) > 1e-6 || math.Abs(math.Exp(she.LogProbA)-p) > 1e-6 {
			t.Errorf("answer prob %v, logprob %v; prediction prob %v", she.A[0].Prob, she.LogProbA, p)
		}
		if she.LogProbA <= she.LogProbB || r.Answers[1].LogProbB <= r.Answers[1].LogProbA {
			t.Errorf("she: A %v B %v; he: A %v B %v", she.LogProbA, she.LogProbB, r.Answers[1].LogProbA, r.Answers[1].LogProbB)
		}
	})
}

// TestCompareInputErrors: options that do not fit the prompts are
// InputErrors, which the command line reports as usage errors.
func TestCompareInputErrors(t *testing.T) {
	e := openReference(t, stories(t))
	for name, edit := range map[string]func(*CompareOptions){
		"position":     func(o *CompareOptions) { o.Positions = "99" },
		"empty answer": func(o *CompareOptions) { o.Answers = []string{""} },
		"sort":         func(o *CompareOptions) { o.Sort = "bogus" },
		"no tokens":    func(o *CompareOptions) { o.A = ""; o.Tokenize.BOS = models.BOSNo },
	} {
		t.Run(name, func(t *testing.T) {
			o := compareOpts()
			edit(&o)
			_, err := Compare(e, o)
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("err = %v, want an InputError", err)
			}
		})
	}
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestCompareNoLens checks that NoLens leaves the lens out, and nothing
// else: the ranking and predictions equal a run with the lens, and the
// summary says nothing about a lens.
func TestCompareNoLens(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		o := compareOpts()
		with, err := Compare(e, o)
		if err != nil {
			t.Fatal(err)
		}
		o.NoLens = true
		without, err := Compare(e, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(with.Lens) == 0 || without.Lens == nil || len(without.Lens) != 0 {
			t.Fatalf("lens: %d layers with, %v without", len(with.Lens), without.Lens)
		}
		if without.Summary != nil && without.Summary.Lens != nil {
			t.Errorf("summary speaks of a lens that was not computed: %+v", without.Summary.Lens)
		}
		if !reflect.DeepEqual(with.Components, without.Components) || !reflect.DeepEqual(with.Prompts, without.Prompts) {
			t.Error("NoLens changed the ranking or the predictions")
		}
	})
}

// TestCompareLensLastLayer pins where the last layer's lens comes from. In
// norm mode it is the model's own logits, which Compare takes from the run
// instead of computing again: its values are the prediction's, bit for bit,
// and they agree with the lens computed independently here (resid_post of
// the last layer, captured by a separate run, through the engine's
// unembedder) to float32 rounding. In gamma mode (no final norm) the last
// layer is computed like every other, and differs from the logits.
func TestCompareLensLastLayer(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		nl := e.ModelInfo().NLayer
		o := compareOpts()
		r, err := Compare(e, o)
		if err != nil {
			t.Fatal(err)
		}
		last := r.Lens[nl-1]
		for i, side := range [][]LensToken{last.A, last.B} {
			top := r.Prompts[i].Top
			for k := range min(len(side), len(top)) {
				if side[k].ID != top[k].ID || side[k].Value != top[k].Logit {
					t.Errorf("prompt %d: lens %d %+v, prediction %+v: want the model's own logits", i, k, side[k], top[k])
				}
			}
		}
		// the independent lens of the same rows
		run, err := e.NewRunner(nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer run.Close()
		u, err := e.NewUnembedder()
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		hk := models.Hook{Kind: models.ResidPost, Layer: nl - 1}
		for i, text := range []string{o.A, o.B} {
			ids, err := e.Tokenize(text, models.TokenizeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			cs, err := run.Run([][]int32{ids}, []models.Hook{hk})
			if err != nil {
				t.Fatal(err)
			}
			a, _ := cs[0].At(hk)
			lg, err := u.Unembed(nil, a.Row(len(ids)-1), 1, models.LensNorm)
			if err != nil {
				t.Fatal(err)
			}
			side := [][]LensToken{last.A, last.B}[i]
			for _, tok := range side {
				// 1e-4 relative: a 64-wide norm and a 512-row product in float32
				if want := float64(lg[tok.ID]); math.Abs(tok.Value-want) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Errorf("prompt %d token %d: lens %v, unembedded resid_post %v", i, tok.ID, tok.Value, want)
				}
			}
		}
		// gamma mode computes the last layer as every other layer
		o.Lens = models.LensGamma
		g, err := Compare(e, o)
		if err != nil {
			t.Fatal(err)
		}
		if gl := g.Lens[nl-1].A[0]; gl.Value == r.Prompts[0].Top[0].Logit {
			t.Errorf("gamma lens of the last layer %+v equals the model's logit", gl)
		}
	})
}
