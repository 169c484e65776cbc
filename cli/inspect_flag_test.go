package cli

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestInspectModelFlag: inspect takes the model as its argument or with -m,
// like every other command; two different models, or none, are refused.
func TestInspectModelFlag(t *testing.T) {
	p := testmodels.Path(t, testmodels.Stories260K)
	byArg, _, err := run(t, false, "inspect", p)
	if err != nil {
		t.Fatal(err)
	}
	byFlag, _, err := run(t, false, "inspect", "-m", p)
	if err != nil {
		t.Fatal(err)
	}
	if byArg != byFlag || !strings.Contains(byArg, "llama") {
		t.Errorf("inspect -m differs from inspect MODEL:\n%s\n---\n%s", byFlag, byArg)
	}
	if _, _, err := run(t, false, "inspect", "-m", p, p); err != nil {
		t.Errorf("the same model twice: %v", err)
	}
	other := testmodels.Path(t, testmodels.TinyStories656KQ8)
	for _, args := range [][]string{{"inspect", "-m", p, other}, {"inspect"}} {
		_, _, err := run(t, false, args...)
		if err == nil || ExitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want a usage error", args, err, ExitCode(err))
		}
	}
}
