package cli

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestPatchSummary runs patch on the demo pair, whose grid docs/patch.md
// reads: the answer sits on the last token of "girl"/"boy" (position 12,
// "y") up to layer 3 and moves to the last position in layer 4, where
// layer 4's attention writes it. The summary must say so with the grid's
// own numbers; --from-compare adds the verdict on compare's ranking.
func TestPatchSummary(t *testing.T) {
	doc := patchJSON(t, "--wrong", " he")
	s := doc.Summary
	if s == nil || s.Residual != "resid_post" || s.Carry != analysis.SummaryPatchCarry {
		t.Fatalf("summary %+v", s)
	}
	var at12, at16 *analysis.PatchRun
	for i := range s.Lives {
		r := &s.Lives[i]
		switch r.Positions[0].Corrupt {
		case 12:
			at12 = r
		case 16:
			at16 = r
		}
		// every number is a cell of the grid
		if want := result(t, doc, shortOf(r.MaxHook), r.Positions[0].Corrupt).Normalized; r.Max != want {
			t.Errorf("run %+v: max %v, the grid says %v", r, r.Max, want)
		}
	}
	if at12 == nil || at12.Token != "y" || at12.FromLayer > 1 || at12.ToLayer != 3 {
		t.Fatalf("no run at position 12 (\"y\") through layer 3: %+v", s.Lives)
	}
	if at16 == nil || at16.FromLayer != 4 || len(at16.Writers) == 0 || at16.Writers[0].Hook != "blocks.4.hook_attn_out" ||
		at16.Writers[0].Normalized != result(t, doc, "attn_out.4", 16).Normalized {
		t.Fatalf("the last position in layer 4 is not written by layer 4's attention: %+v", at16)
	}
	for _, want := range []string{
		fmt.Sprintf(`at position 12 ("y") through layers %d–3 (up to %.2f)`, at12.FromLayer, at12.Max),
		fmt.Sprintf(`at position 16 by layer 4's attention (%.2f)`, at16.Writers[0].Normalized),
	} {
		if !strings.Contains(s.Text, want) {
			t.Errorf("summary lacks %q:\n%s", want, s.Text)
		}
	}
	if s.Agreement != nil || strings.Contains(s.Text, "Spearman") {
		t.Errorf("agreement without --from-compare: %s", s.Text)
	}

	out, _, err := run(t, false, patchArgs(t, "--wrong", " he")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimLeft(out, "\n"), "== summary ==\nThe effect lives in the residual stream") {
		t.Errorf("patch does not open with the summary:\n%.300s", out)
	}

	// compare's top 10 sit mostly on "o", where patching restores little
	// (docs/patch.md: ρ = 0.38): they disagree
	fc := patchJSON(t, "--wrong", " he", "--from-compare")
	a := fc.Summary.Agreement
	if a == nil || fc.FromCompare.Spearman == nil || a.Spearman != *fc.FromCompare.Spearman || a.Components != 10 || a.Verdict != "disagree" ||
		!strings.Contains(fc.Summary.Text, fmt.Sprintf("disagrees with patching's: Spearman's ρ = %.2f over 10 components (below 0.6)", a.Spearman)) {
		t.Errorf("from compare: %+v\n%s", a, fc.Summary.Text)
	}

	// a known answer: the last layer's residual stream at the last
	// position is the clean run's, all of the effect
	last := patchJSON(t, "--wrong", " he", "--pos", "last", "--kinds", "resid_post", "--layers", "-1")
	if l := last.Summary.Lives; len(l) != 1 || l[0].FromLayer != 4 || l[0].Positions[0].Corrupt != 16 || math.Abs(l[0].Max-1) > 1e-4 {
		t.Errorf("resid_post.4 at the last position: %+v\n%s", l, last.Summary.Text)
	}
}

// shortOf turns blocks.L.hook_KIND into KIND.L.
func shortOf(hook string) string {
	var l int
	var kind string
	if _, err := fmt.Sscanf(strings.Replace(hook, ".hook_", " ", 1), "blocks.%d %s", &l, &kind); err != nil {
		return hook
	}
	return fmt.Sprintf("%s.%d", kind, l)
}

// TestContrastSummary runs contrast on the he/she pairs (one word apart:
// separable right after it, every pair pointing the same way, the
// direction reading ▁she) and on a set against itself (no separation).
func TestContrastSummary(t *testing.T) {
	doc := contrastJSON(t, "--a", sheFile, "--b", heFile, "--paired")
	s := doc.Summary
	if s == nil || s.NoSeparation || s.Best == nil || s.Best.Hook != doc.Components[0].Hook || *s.Best.Separation != *doc.Components[0].Separation || s.Best.Of != 15 {
		t.Fatalf("best %+v, the ranking's first %s", s.Best, doc.Components[0].Hook)
	}
	if sp := s.Separable; sp == nil || !sp.Separable || sp.FromLayer != 0 || !sp.EveryLaterLayer || sp.HeldOut < analysis.SummarySeparable {
		t.Errorf("separable %+v", sp)
	}
	if l := s.Lens; l == nil || l.Hook != "resid_post.0" || !contains(l.TowardA, "▁she") {
		t.Errorf("lens %+v", l)
	}
	if sg := s.Sign; sg == nil || sg.Pairs != 12 || sg.Positive != 12 || !sg.Consistent {
		t.Errorf("sign %+v", sg)
	}
	for _, want := range []string{
		fmt.Sprintf("Cohen's d = %.3g along the mean difference, the largest of 15 components", *doc.Components[0].Separation),
		"They are separable on held-out prompts (leave-one-out accuracy ≥ 0.9) from layer 0 on",
		"The pairs agree in sign: 12 of 12 pair differences (1.00)",
	} {
		if !strings.Contains(s.Text, want) {
			t.Errorf("summary lacks %q:\n%s", want, s.Text)
		}
	}
	out, _, err := run(t, false, "contrast", oneThread, "-m", testmodels.Path(t, testmodels.Stories260K), "--a", sheFile, "--b", heFile, "--paired")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimLeft(out, "\n"), "== summary ==\nA and B separate best at ") {
		t.Errorf("contrast does not open with the summary:\n%.300s", out)
	}

	// a set against itself: the same activations, up to batch rounding
	same := contrastJSON(t, "--a", sheFile, "--b", sheFile)
	if same.Summary == nil || !same.Summary.NoSeparation || same.Summary.Best != nil || !strings.Contains(same.Summary.Text, "no separation") {
		t.Errorf("identical sets: %+v", same.Summary)
	}
}
