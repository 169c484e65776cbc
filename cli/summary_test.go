package cli

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestCompareSummary runs compare on pairs with known answers: the demo
// pair (the summary names girl/boy, the largest component and the changed
// prediction), identical prompts ("no difference"), and a compared
// position before the first differing token ("nothing can differ").
func TestCompareSummary(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	doc := compareJSON(t, "-m", model, oneThread, "--answer", " she", goldenA, goldenB)
	s := doc.Summary
	if s == nil || s.FirstDifference == nil || s.FirstDifference.TextA != " girl" || s.FirstDifference.TextB != " boy" {
		t.Fatalf("summary %+v", s)
	}
	if s.Largest == nil || s.Largest.Hook != doc.Components[0].Hook {
		t.Errorf("largest %+v, the ranking's first is %s", s.Largest, doc.Components[0].Hook)
	}
	if s.Prediction == nil || s.Prediction.TopA != "▁she" || s.Prediction.TopB != "▁he" || s.Prediction.RankOfTopA != doc.Answers[0].B[0].Rank {
		t.Errorf("prediction %+v", s.Prediction)
	}
	out, _, err := run(t, false, "compare", "-m", model, oneThread, goldenA, goldenB)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimLeft(out, "\n"), "== summary ==\nThe prompts first differ at position 10") {
		t.Errorf("compare does not open with the summary:\n%.300s", out)
	}

	same := compareJSON(t, "-m", model, oneThread, goldenA, goldenA)
	if same.Summary == nil || !same.Summary.Identical || !strings.Contains(same.Summary.Text, "nothing differs") {
		t.Errorf("identical prompts: %+v", same.Summary)
	}
	early := compareJSON(t, "-m", model, oneThread, "--pos", "5", goldenA, goldenB)
	if early.Summary == nil || !early.Summary.BeforeDifference || early.Summary.Largest != nil {
		t.Errorf("compared before the difference: %+v", early.Summary)
	}
}
