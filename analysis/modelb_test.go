package analysis

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

var modelBKinds = []models.Kind{models.ResidPost, models.AttnOut, models.MLPOut}

func modelBOpts() ModelBOptions {
	return ModelBOptions{Prompt: "Once upon a time, there was a little girl named", Positions: "all", Kinds: modelBKinds, Sort: "rel", TopK: 5, LensK: 3, Lens: models.LensNorm}
}

// TestModelBSameFile: the same file loaded twice is the same model:
// every difference is exactly zero and the predictions agree.
func TestModelBSameFile(t *testing.T) {
	for _, en := range engines {
		t.Run(en.name, func(t *testing.T) {
			p := stories(t)
			r, err := CompareModels(en.open(t, p), en.open(t, p), modelBOpts())
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Components) != 3*5 {
				t.Fatalf("%d components, want 15", len(r.Components))
			}
			for _, c := range r.Components {
				if c.L2 != 0 || c.RelL2 != 0 || c.NormA != c.NormB || c.NormA == 0 {
					t.Errorf("%s: l2 %g rel %g norms %g %g, want exactly 0 and equal norms", c.Short, c.L2, c.RelL2, c.NormA, c.NormB)
				}
			}
			if r.KLAB != 0 || r.KLBA != 0 {
				t.Errorf("KL %g %g, want 0", r.KLAB, r.KLBA)
			}
			for i := range r.TopA {
				if r.TopA[i] != r.TopB[i] {
					t.Errorf("prediction %d: %+v vs %+v", i, r.TopA[i], r.TopB[i])
				}
			}
			for _, l := range r.Lens {
				if l.Layer != l.LayerB || l.A[0] != l.B[0] {
					t.Errorf("lens layer %d: %+v vs %+v", l.Layer, l.A, l.B)
				}
			}
		})
	}
}

// TestModelBQuantized: TinyStories F16 against its Q8_0: differences are
// finite, nonzero and small (Q8_0 keeps about 2-3 significant digits per
// weight: a relative difference well under 20% per component), and so is
// the KL of the next-token distributions.
func TestModelBQuantized(t *testing.T) {
	for _, en := range engines {
		t.Run(en.name, func(t *testing.T) {
			a := en.open(t, testmodels.Path(t, testmodels.TinyStories656KF16))
			b := en.open(t, testmodels.Path(t, testmodels.TinyStories656KQ8))
			r, err := CompareModels(a, b, modelBOpts())
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Components) != 3*2 {
				t.Fatalf("%d components, want 6", len(r.Components))
			}
			for _, c := range r.Components {
				if !(c.L2 > 0) || math.IsInf(c.L2, 0) || !(c.RelL2 < 0.2) {
					t.Errorf("%s: l2 %g rel %g: want finite, nonzero and small", c.Short, c.L2, c.RelL2)
				}
			}
			if !(r.KLAB > 0) || !(r.KLAB < 0.05) || !(r.KLBA > 0) || !(r.KLBA < 0.05) {
				t.Errorf("KL %g, %g: want small and nonzero", r.KLAB, r.KLBA)
			}
			// the KL recomputed from the reported probabilities of the
			// shared top tokens is a lower bound on nothing; check instead
			// that the top token agrees, as it should for Q8_0
			if r.TopA[0].ID != r.TopB[0].ID {
				t.Errorf("top token %s vs %s", r.TopA[0].Piece, r.TopB[0].Piece)
			}
		})
	}
}

// TestModelBRefusals: another vocabulary is refused with the first
// difference; another width keeps the predictions and the lens but has no
// components.
func TestModelBRefusals(t *testing.T) {
	ref := engines[0]
	a := ref.open(t, stories(t))
	_, err := CompareModels(a, ref.open(t, testmodels.Path(t, testmodels.TinyStories656KF16)), modelBOpts())
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "token ") || !strings.Contains(err.Error(), "do not share a tokenizer") {
		t.Fatalf("different vocabularies: %v", err)
	}

	p := filepath.Join(t.TempDir(), "narrow.gguf")
	if err := models.WriteSynthetic(p, models.SynthSpec{NLayer: 3, DModel: 32, NHead: 4, NHeadKV: 2, DFF: 64, NCtx: 128, VocabPath: stories(t), Seed: 3}); err != nil {
		t.Fatal(err)
	}
	r, err := CompareModels(a, ref.open(t, p), modelBOpts())
	if err != nil {
		t.Fatal(err)
	}
	if r.Components != nil || len(r.Lens) != 5 || len(r.TopB) != 5 || !(r.KLAB > 0) {
		t.Fatalf("components %v, %d lens layers, %d predictions, KL %g", r.Components, len(r.Lens), len(r.TopB), r.KLAB)
	}
	if !strings.Contains(strings.Join(r.Warnings, " "), "d_model 64") {
		t.Errorf("warnings %q do not explain the width", r.Warnings)
	}
	// 5 layers of A onto 3 of B at the same relative depth
	want := []int{0, 1, 1, 2, 2}
	for l, m := range r.LayerMap {
		if m != want[l] {
			t.Fatalf("layer map %v, want %v", r.LayerMap, want)
		}
	}
	// an explicit map is used as given, and checked
	o := modelBOpts()
	o.LayerMap = []int{2, 2, 1, 0, 0}
	r, err = CompareModels(a, ref.open(t, p), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lens[0].LayerB != 2 || r.Lens[4].LayerB != 0 {
		t.Errorf("lens layers %d, %d, want 2 and 0 from the map", r.Lens[0].LayerB, r.Lens[4].LayerB)
	}
	for _, bad := range [][]int{{0, 1}, {0, 1, 2, 3, 0}} {
		o.LayerMap = bad
		if _, err := CompareModels(a, ref.open(t, p), o); !errors.As(err, &ie) {
			t.Errorf("layer map %v: %v", bad, err)
		}
	}
}

// TestContrastModels: over several prompts, the same file twice gives
// exactly zero; F16 against Q8_0 small, nonzero, finite divergences with
// a spread, a small KL per prompt, and the recorded KL equals the one
// compare --model-b computes for the same prompt.
func TestContrastModels(t *testing.T) {
	prompts := []string{"Once upon a time", "The little dog ran to the", "Lily was happy because she", "One day, Tom"}
	sources := []string{"p:1", "p:2", "p:3", "p:4"}
	for _, en := range engines {
		t.Run(en.name, func(t *testing.T) {
			o := ModelBContrastOptions{Prompts: prompts, Sources: sources, Pos: RowSpec{Indices: []int{-1}}, Kinds: modelBKinds, Parallel: 2}
			s := stories(t)
			same, err := ContrastModels(en.open(t, s), en.open(t, s), o)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range same.Components {
				if c.MeanRel != 0 || c.MaxRel != 0 || c.SDRel != 0 {
					t.Errorf("same file: %s differs (%+v)", c.Short, c)
				}
			}
			if same.MeanKL != 0 || same.TopAgree != 1 {
				t.Errorf("same file: KL %g, top agreement %g", same.MeanKL, same.TopAgree)
			}
			a := en.open(t, testmodels.Path(t, testmodels.TinyStories656KF16))
			b := en.open(t, testmodels.Path(t, testmodels.TinyStories656KQ8))
			q, err := ContrastModels(a, b, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(q.Components) != 6 || len(q.Prompts) != 4 {
				t.Fatalf("%d components, %d prompts", len(q.Components), len(q.Prompts))
			}
			for i, c := range q.Components {
				if !(c.MeanRel > 0) || !(c.MeanRel < 0.2) || !(c.SDRel > 0) || !(c.MaxRel >= c.MeanRel) || (i > 0 && c.MeanRel > q.Components[i-1].MeanRel) {
					t.Errorf("%s: %+v", c.Short, c)
				}
			}
			for _, p := range q.Prompts {
				if !(p.KLAB > 0) || !(p.KLAB < 0.05) {
					t.Errorf("%s: KL %g", p.Source, p.KLAB)
				}
			}
			one := modelBOpts()
			one.Prompt, one.Positions = prompts[1], "last"
			r, err := CompareModels(a, b, one)
			if err != nil {
				t.Fatal(err)
			}
			// both runs decode the same tokens; batching may move the last
			// bits, so 1e-3 relative
			if math.Abs(r.KLAB-q.Prompts[1].KLAB) > 1e-3*r.KLAB {
				t.Errorf("KL of prompt 2: %g, compare --model-b %g", q.Prompts[1].KLAB, r.KLAB)
			}
		})
	}
}
