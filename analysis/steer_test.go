package analysis

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

func TestKLDivergence(t *testing.T) {
	// tol: a handful of float64 operations on values exact in float32;
	// 1e-15 is a few ulp of results near 0.1
	const tol = 1e-15
	for _, tc := range []struct {
		name string
		p, q []float32
		want float64
	}{
		{"equal", []float32{0.25, 0.75}, []float32{0.25, 0.75}, 0},
		{"halves against quarters", []float32{0.5, 0.5}, []float32{0.25, 0.75}, 0.5*math.Log(2) + 0.5*math.Log(0.5/0.75)},
		{"asymmetric", []float32{0.25, 0.75}, []float32{0.5, 0.5}, 0.25*math.Log(0.5) + 0.75*math.Log(1.5)},
		// a token with probability 0 in p adds nothing (0 log 0 = 0)
		{"zero in p", []float32{0, 1}, []float32{0.5, 0.5}, math.Log(2)},
		// nor does one that float32 rounded to 0 in q: KL stays finite
		{"zero in q", []float32{0.5, 0.5}, []float32{0, 1}, 0.5 * math.Log(0.5)},
		{"empty", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := klDivergence(tc.p, tc.q); math.Abs(got-tc.want) > tol || math.IsNaN(got) {
				t.Errorf("klDivergence = %v, want %v", got, tc.want)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic on lengths that differ")
		}
	}()
	klDivergence([]float32{1}, []float32{0.5, 0.5})
}

func TestDegenerate(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	for _, tc := range []struct {
		name   string
		logits []float32
		want   bool
	}{
		{"empty", nil, false},
		{"a prediction", []float32{0.5, 3, -1}, false},
		{"tiny spread", []float32{1, math.Nextafter32(1, 2)}, false},
		// a residual that overflowed is normalised to zeros: every logit
		// is the bias, or 0
		{"all zero", []float32{0, 0, 0}, true},
		{"all equal", []float32{-2.5, -2.5}, true},
		{"one logit", []float32{4}, true},
		{"NaN", []float32{1, nan, 2}, true},
		{"NaN first", []float32{nan, 1, 2}, true},
		{"+Inf", []float32{1, inf}, true},
		{"-Inf", []float32{-inf, 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := degenerate(tc.logits); got != tc.want {
				t.Errorf("degenerate(%v) = %v, want %v", tc.logits, got, tc.want)
			}
		})
	}
}

// sheVector is the unit mean difference "… she" − "… he" of resid_post at
// every layer but 0, as contrast --export-cvec writes it.
func sheVector(t *testing.T, e models.Engine) *contrast.ControlVector {
	t.Helper()
	r, err := Contrast(e, contrastOpts())
	if err != nil {
		t.Fatal(err)
	}
	cv, _, err := ControlVector(r, e.ModelInfo().NLayer, CvecOptions{Method: "mean_diff", Norm: "unit"})
	if err != nil {
		t.Fatal(err)
	}
	return cv
}

func steerOpts(cv *contrast.ControlVector) SteerOptions {
	return SteerOptions{
		Model: "m", Prompt: "One day Lily and Tom went to the park. Then", Vector: cv, VectorFile: "v.gguf",
		Scales: []float64{-4, 0, 4}, N: 4, TopK: 3, Answers: []string{" she", " he"},
	}
}

// TestSteer steers with the she − he direction on every engine: scale 0 is
// the baseline (KL 0, no gains or losses), positive scales raise P(" she")
// and lower P(" he"), negative ones the reverse, and every reported number
// follows from its definition.
func TestSteer(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		o := steerOpts(sheVector(t, e))
		r, err := Steer(e, o)
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{1, 2, 3, 4}; !slices.Equal(r.Cvec.Layers, want) || r.Cvec.File != "v.gguf" || len(r.Warnings) != 0 {
			t.Errorf("layers %v (want %v), file %q, warnings %q", r.Cvec.Layers, want, r.Cvec.File, r.Warnings)
		}
		if len(r.Scales) != 3 || r.Baseline.KL != 0 || r.Baseline.Gains != nil || r.Baseline.Losses != nil {
			t.Fatalf("%d scales, baseline %+v", len(r.Scales), r.Baseline)
		}
		if zero := r.Scales[1]; zero.KL != 0 || zero.Text != r.Baseline.Text || zero.Gains != nil {
			t.Errorf("scale 0 is not the baseline: %+v", zero)
		}
		for _, st := range slices.Concat([]SteerStep{r.Baseline}, r.Scales) {
			var text strings.Builder
			for _, tok := range st.Tokens {
				text.WriteString(tok.Text)
			}
			if len(st.Tokens) == 0 || len(st.Tokens) > o.N || text.String() != st.Text {
				t.Errorf("scale %g: text %q from tokens %v", st.Scale, st.Text, st.Tokens)
			}
			if len(st.Top) != o.TopK || len(st.Answers) != 2 {
				t.Fatalf("scale %g: top %d, answers %d", st.Scale, len(st.Top), len(st.Answers))
			}
			for _, a := range st.Answers {
				// prob is exp(logprob), computed from it: exact
				if a.Prob != math.Exp(a.LogProb) {
					t.Errorf("scale %g %q: prob %v, logprob %v", st.Scale, a.Text, a.Prob, a.LogProb)
				}
			}
			for _, g := range st.Gains {
				// delta is the float32 difference of the two
				// probabilities: 1e-7 absolute
				if math.Abs(g.Delta-(g.Prob-g.Base)) > 1e-7 || g.Delta < 0 {
					t.Errorf("scale %g: gain %+v", st.Scale, g)
				}
			}
			for _, l := range st.Losses {
				if math.Abs(l.Delta-(l.Prob-l.Base)) > 1e-7 || l.Delta > 0 {
					t.Errorf("scale %g: loss %+v", st.Scale, l)
				}
			}
		}
		down, up := r.Scales[0], r.Scales[2]
		base := r.Baseline.Answers
		if !(up.Answers[0].Prob > base[0].Prob && up.Answers[1].Prob < base[1].Prob) {
			t.Errorf("scale 4: P(she) %v → %v, P(he) %v → %v; want she up, he down", base[0].Prob, up.Answers[0].Prob, base[1].Prob, up.Answers[1].Prob)
		}
		if !(down.Answers[0].Prob < base[0].Prob && down.Answers[1].Prob > base[1].Prob) {
			t.Errorf("scale -4: P(she) %v → %v, P(he) %v → %v; want she down, he up", base[0].Prob, down.Answers[0].Prob, base[1].Prob, down.Answers[1].Prob)
		}
		if up.KL <= 0 || down.KL <= 0 {
			t.Errorf("KL %v at -4, %v at 4; want both > 0", down.KL, up.KL)
		}

		// a layer range applies only the directions inside it
		o.Layers, _ = diff.ParseLayers("--layer-range", "2:3")
		o.Scales, o.Answers = []float64{4}, nil
		part, err := Steer(e, o)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(part.Cvec.Layers, []int{2, 3}) || part.Scales[0].KL <= 0 || part.Scales[0].KL >= up.KL {
			t.Errorf("layers 2:3: layers %v, KL %v (all layers %v); want [2 3] and a smaller KL", part.Cvec.Layers, part.Scales[0].KL, up.KL)
		}
	})
}

// TestSteerErrors: a vector for another width, a layer range past the
// model, a scale that overflows the model, and an engine that cannot
// generate.
func TestSteerErrors(t *testing.T) {
	e := openReference(t, stories(t))
	cv := sheVector(t, e)
	o := steerOpts(cv)

	wide := &contrast.ControlVector{Directions: map[int][]float32{1: make([]float32, 65)}, Offset: -1}
	if _, err := Steer(e, steerOpts(wide)); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("width 65: err = %v", err)
	}
	past := o
	past.Layers, _ = diff.ParseLayers("--layer-range", "7:9")
	var ie *InputError
	if _, err := Steer(e, past); !errors.As(err, &ie) || !strings.Contains(err.Error(), "layer range 7:9") {
		t.Errorf("range 7:9: err = %v, want an InputError", err)
	}
	// 3e38 is finite in float32, twice it is not: the residual overflows
	// at layer 2 on every engine (the reference normalises in float64, so
	// a merely large vector does not break it down as it does llama.cpp)
	big := make([]float32, e.ModelInfo().DModel)
	for i := range big {
		big[i] = 3e38
	}
	huge := steerOpts(&contrast.ControlVector{Directions: map[int][]float32{1: big, 2: big}, Offset: -1})
	huge.Scales, huge.N = []float64{1}, 1
	if _, err := Steer(e, huge); err == nil || !strings.Contains(err.Error(), "smaller scale") {
		t.Errorf("overflowing vector: err = %v", err)
	}
	// a scale whose product with the vector is beyond float32 is refused
	// up front, naming --scale (llama.cpp refused the vector's "+Inf")
	for _, scales := range [][]float64{{1e45}, {0, -1e45}, {math.Inf(1)}, {math.NaN()}} {
		bad := o
		bad.Scales = scales
		if _, err := Steer(e, bad); !errors.As(err, &ie) || !strings.Contains(err.Error(), "--scale") {
			t.Errorf("scales %v: err = %v, want an InputError about --scale", scales, err)
		}
	}
	var ns *models.NotSupportedError
	if _, err := Steer(noGenerator{e}, o); !errors.As(err, &ns) {
		t.Errorf("engine without generation: err = %v", err)
	}
}

// noGenerator is an engine whose runners only run (no Generate).
type noGenerator struct{ models.Engine }

func (e noGenerator) NewRunner(seqs [][]int32, nSeq int) (models.Runner, error) {
	r, err := e.Engine.NewRunner(seqs, nSeq)
	return struct{ models.Runner }{r}, err
}
