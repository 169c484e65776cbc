package analysis

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// shePairs is a paired dataset whose pairs differ in the pronoun at the
// end.
func shePairs() *contrast.Dataset {
	ds := &contrast.Dataset{Paired: true}
	for i, who := range []string{"Lily", "Tom", "Sue", "Ben", "Mia", "Sam"} {
		s := fmt.Sprintf("One day %s went to the park. Then", who)
		ds.A = append(ds.A, contrast.Prompt{Text: s + " she", Source: fmt.Sprint("a", i)})
		ds.B = append(ds.B, contrast.Prompt{Text: s + " he", Source: fmt.Sprint("b", i)})
	}
	return ds
}

func contrastOpts() ContrastOptions {
	return ContrastOptions{
		Model: "m", Dataset: shePairs(), Sources: [2]string{"a", "b"}, Positions: RowSpec{Indices: []int{-1}}, Spec: "last",
		Kinds: []models.Kind{models.ResidPost, models.AttnOut}, Parallel: 4, LensK: 3, Lens: models.LensNorm,
	}
}

// TestContrast runs Contrast on every engine and checks what follows from
// the statistics: one component per layer and kind ranked by separation,
// the projection means differing by ‖Δμ‖ (the projection is onto the unit
// mean difference), and a lens of every residual direction; then exports
// the resid_post directions as a control vector.
func TestContrast(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		o := contrastOpts()
		r, err := Contrast(e, o)
		if err != nil {
			t.Fatal(err)
		}
		nl := e.ModelInfo().NLayer
		if len(r.Components) != nl*len(o.Kinds) || r.A.Rows != 6 || r.B.Rows != 6 || !r.Paired {
			t.Fatalf("%d components, rows %d/%d", len(r.Components), r.A.Rows, r.B.Rows)
		}
		for i, c := range r.Components {
			if c.Rank != i+1 {
				t.Errorf("component %d has rank %d", i, c.Rank)
			}
			if i > 0 && c.Separation != nil && r.Components[i-1].Separation != nil && *c.Separation > *r.Components[i-1].Separation {
				t.Errorf("#%d separation %v after %v", i+1, *c.Separation, *r.Components[i-1].Separation)
			}
			// the means of the projections on the unit Δμ differ by ‖Δμ‖;
			// float32 rows, float64 sums: 1e-4 relative
			if d := c.ProjMeanA - c.ProjMeanB; math.Abs(d-c.MeanDiffNorm) > 1e-4*max(1, c.MeanDiffNorm) {
				t.Errorf("%s: projection means differ by %v, ‖Δμ‖ %v", c.Short, d, c.MeanDiffNorm)
			}
			if c.Lens == nil || len(c.Lens.MeanDiffTop) != o.LensK || len(c.Lens.PC1Bottom) != o.LensK {
				t.Errorf("%s: lens %+v", c.Short, c.Lens)
			}
		}
		// the last token differs in every pair: resid_post of the last
		// layer separates the sets perfectly
		last := r.Stats[models.Hook{Kind: models.ResidPost, Layer: nl - 1}]
		if last.HeldOut != 1 || last.SignConsistency != 1 {
			t.Errorf("resid_post.%d: held-out %v, sign consistency %v; want 1, 1", nl-1, last.HeldOut, last.SignConsistency)
		}
		cv, ex, err := ControlVector(r, nl, CvecOptions{Method: "mean_diff", Norm: "unit"})
		if err != nil {
			t.Fatal(err)
		}
		if len(cv.Directions) != nl-1 || len(ex.Skipped) != 1 {
			t.Errorf("%d directions, skipped %q; want %d and layer 0", len(cv.Directions), ex.Skipped, nl-1)
		}
		for n, v := range cv.Directions {
			if math.Abs(diff.Norm(v)-1) > 1e-6 {
				t.Errorf("direction.%d has norm %v, want 1", n, diff.Norm(v))
			}
		}
	})
}

func TestContrastInputErrors(t *testing.T) {
	e := openReference(t, stories(t))
	for name, edit := range map[string]func(*ContrastOptions){
		"all unpaired": func(o *ContrastOptions) { o.Dataset.Paired = false; o.Positions = RowSpec{All: true} },
		"outside":      func(o *ContrastOptions) { o.Positions = RowSpec{Indices: []int{99}} },
		"too long":     func(o *ContrastOptions) { o.NCtx = 3 },
		"all unequal":  func(o *ContrastOptions) { o.Positions = RowSpec{All: true}; o.Dataset.B[0].Text += " and a dog" },
	} {
		t.Run(name, func(t *testing.T) {
			o := contrastOpts()
			edit(&o)
			_, err := Contrast(e, o)
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("err = %v, want an InputError", err)
			}
		})
	}
}

func TestRowSpec(t *testing.T) {
	for _, tc := range []struct {
		spec string
		n    int
		want string
	}{
		{"", 5, "[4]"},
		{"last", 5, "[4]"},
		{"0,-1", 5, "[0 4]"},
		{"2, last, 2", 5, "[2 4]"}, // duplicates once
		{"-5", 5, "[0]"},
	} {
		r, err := ParseRowSpec(tc.spec)
		if err != nil {
			t.Fatalf("%q: %v", tc.spec, err)
		}
		rows, err := r.Resolve(tc.n)
		if err != nil || fmt.Sprint(rows) != tc.want {
			t.Errorf("%q on %d tokens: %v %v, want %s", tc.spec, tc.n, rows, err, tc.want)
		}
	}
	if r, err := ParseRowSpec("all"); err != nil || !r.All {
		t.Errorf("all: %+v %v", r, err)
	}
	if _, err := ParseRowSpec("1,x"); err == nil {
		t.Error("1,x parsed")
	}
	r, _ := ParseRowSpec("5")
	if _, err := r.Resolve(5); err == nil {
		t.Error("position 5 of 5 tokens resolved")
	}
	r, _ = ParseRowSpec("-6")
	if _, err := r.Resolve(5); err == nil {
		t.Error("position -6 of 5 tokens resolved")
	}
}
