package analysis

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/models"
)

// TestNonFinite: a model whose activations overflow is reported once, as
// such, with the first hook that is not finite, by every analysis; before,
// compare printed tables of NaN (and --json failed with "unsupported value:
// NaN"), patch blamed its metric, contrast its directions and steer its
// scale.
func TestNonFinite(t *testing.T) {
	path := benchmodels.Overflow(t)
	forEngines(t, path, func(t *testing.T, e models.Engine) {
		check := func(what string, err error) {
			t.Helper()
			var nf *NonFiniteError
			if !errors.As(err, &nf) {
				t.Fatalf("%s: err = %v, want a NonFiniteError", what, err)
			}
			if nf.Hook != "blocks.1.hook_mlp_out" || !strings.Contains(err.Error(), "from blocks.1.hook_mlp_out on") || !strings.Contains(err.Error(), "overflow.gguf produces") {
				t.Errorf("%s: %v, want the first non-finite hook blocks.1.hook_mlp_out", what, err)
			}
		}
		o := compareOpts()
		o.Kinds = []models.Kind{models.ResidPost}
		o.Answers = nil
		_, err := Compare(e, o)
		check("compare", err)

		_, err = Patch(e, PatchOptions{
			Model: "m", Clean: promptGirl, Corrupt: promptBoy, Answer: " she", Kinds: []models.Kind{models.ResidPost},
			Layers: []int{0, 1}, Positions: PosLast,
		})
		check("patch", err)

		ds := &contrast.Dataset{Paired: true,
			A: []contrast.Prompt{{Text: promptGirl, Source: "a:1"}, {Text: "She ran", Source: "a:2"}},
			B: []contrast.Prompt{{Text: promptBoy, Source: "b:1"}, {Text: "He ran", Source: "b:2"}}}
		_, err = Contrast(e, ContrastOptions{Dataset: ds, Positions: RowSpec{Indices: []int{-1}}, Kinds: []models.Kind{models.ResidPost}, Parallel: 2})
		check("contrast", err)

		// steer blamed the scale ("use a smaller scale") at scale 0
		dir := make([]float32, e.ModelInfo().DModel)
		dir[0] = 1
		so := steerOpts(&contrast.ControlVector{Directions: map[int][]float32{1: dir}, Offset: -1})
		so.Answers, so.N = nil, 1
		_, err = Steer(e, so)
		check("steer", err)
	})
}

// TestRoundStats: sets without spread give the separation +Inf at every
// hook, whatever rounding leaves in the spread (before, 1e16 for one hook
// and +Inf for the next), and a mean difference at the level of rounding
// gives 0 and no control-vector direction. contrast.Compute applies the
// rule (contrast.TestComputeRounding); the control vector follows it.
func TestRoundStats(t *testing.T) {
	row := func(v float32) []float32 { return []float32{v, 2 * v, -v, 0.5} }
	a, b := contrast.NewSamples(4, 3), contrast.NewSamples(4, 3)
	for range 3 {
		a.Append(row(0.1)) // (0.1+0.1+0.1)/3 is not 0.1 in floating point
		b.Append(row(0.3))
	}
	st, err := contrast.Compute(a, b, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Spread != 0 || !math.IsInf(st.Separation, 1) {
		t.Errorf("identical rows per set: spread %v, separation %v, want 0 and +Inf", st.Spread, st.Separation)
	}

	// B differs from A by float32 rounding only
	b2 := contrast.NewSamples(4, 3)
	for i := range 3 {
		r := row(0.1)
		r[i] = math.Nextafter32(r[i], 1)
		b2.Append(r)
	}
	st2, err := contrast.Compute(a, b2, false)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Norm == 0 || st2.Separation != 0 {
		t.Errorf("rounding-level difference: norm %v, separation %v, want a tiny norm and separation 0", st2.Norm, st2.Separation)
	}
	h := models.Hook{Kind: models.ResidPost, Layer: 1}
	r := &ContrastResult{Stats: map[models.Hook]*contrast.Stats{h: st2, {Kind: models.ResidPost, Layer: 0}: st2}}
	_, _, err = ControlVector(r, 2, CvecOptions{Method: "mean", Norm: "unit"})
	if err == nil || !strings.Contains(err.Error(), "rounding") {
		t.Errorf("control vector from rounding noise: err = %v, want a refusal", err)
	}
}
