package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestParamsMapHTML: params and map write their --html page beside the
// text or JSON output, inlining the document --json prints; an existing
// page is replaced only with --force, checked before any work; params
// --align refuses --html (its correlations are drawn by --plot).
func TestParamsMapHTML(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.tsv")
	if err := os.WriteFile(prompts, []byte("he\tThe boy went out. Then he\nshe\tThe girl went out. Then she\ncat\tThe cat sat.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind string
		args []string
	}{
		{"params", []string{"params", "-m", model, "--layer", "2", "--neuron", "3", "--head", "0", "-k", "3", "--pairs", "2"}},
		{"map", []string{"map", "-m", model, "--prompts", prompts, "--hook", "resid_post.3"}},
	} {
		page := filepath.Join(dir, c.kind+".html")
		args := append(c.args, "--html", page)
		out, errOut, err := run(t, false, append(args, "--json")...)
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		var printed map[string]any
		if err := json.Unmarshal([]byte(out), &printed); err != nil {
			t.Fatalf("%s --json --html: standard output is not one JSON document: %v", c.kind, err)
		}
		if !strings.Contains(errOut, "wrote "+page) {
			t.Errorf("%s: standard error %q does not say where the page is", c.kind, errOut)
		}
		kind, inlined := inlinedDoc(t, page)
		if kind != c.kind {
			t.Errorf("data-kind %q, want %s", kind, c.kind)
		}
		a, _ := json.Marshal(printed)
		b, _ := json.Marshal(inlined)
		if string(a) != string(b) {
			t.Errorf("%s: the page inlines another document than --json prints", c.kind)
		}
		if err := os.WriteFile(page, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := run(t, false, args...); err == nil || !strings.Contains(err.Error(), "--force") {
			t.Errorf("%s: replacing without --force: err = %v", c.kind, err)
		}
		if got, _ := os.ReadFile(page); string(got) != "mine" {
			t.Errorf("%s: the existing file was changed without --force", c.kind)
		}
		out, _, err = run(t, false, append(args, "--force")...)
		if err != nil {
			t.Fatalf("%s --force: %v", c.kind, err)
		}
		if !strings.Contains(out, "wrote "+page) {
			t.Errorf("%s: text output lacks the note:\n%s", c.kind, out)
		}
		if kind, _ := inlinedDoc(t, page); kind != c.kind {
			t.Errorf("%s --force did not replace the page", c.kind)
		}
	}
	_, _, err := run(t, false, "params", "-m", model, "--align", model, "--html", filepath.Join(dir, "align.html"))
	if err == nil || !strings.Contains(err.Error(), "--plot") {
		t.Errorf("params --align --html: err = %v, want a pointer to --plot", err)
	}
}
