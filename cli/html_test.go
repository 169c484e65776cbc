package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// inlinedDoc returns the JSON document a report page inlines.
func inlinedDoc(t *testing.T, path string) (kind string, doc map[string]any) {
	t.Helper()
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<script id="lldiff-data" type="application/json" data-kind="([a-z]+)">(.*?)</script>`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("%s holds no inlined document", path)
	}
	if err := json.Unmarshal(m[2], &doc); err != nil {
		t.Fatalf("%s: the inlined document is not JSON: %v", path, err)
	}
	return string(m[1]), doc
}

// TestHTMLFlag: --html writes the page beside the text or JSON output,
// inlines the same document --json prints, refuses to replace a file
// without --force, and is checked before any work.
func TestHTMLFlag(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	dir := t.TempDir()
	page := filepath.Join(dir, "r.html")
	args := []string{"compare", "-m", model, "-t", "1", goldenA, goldenB, "--html", page}

	out, errOut, err := run(t, false, append(args, "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var printed map[string]any
	if err := json.Unmarshal([]byte(out), &printed); err != nil {
		t.Fatalf("--json with --html: standard output is not one JSON document: %v\n%s", err, out)
	}
	if !strings.Contains(errOut, "wrote "+page) {
		t.Errorf("standard error %q does not say where the page is", errOut)
	}
	kind, inlined := inlinedDoc(t, page)
	if kind != "compare" {
		t.Errorf("data-kind %q, want compare", kind)
	}
	a, _ := json.Marshal(printed)
	b, _ := json.Marshal(inlined)
	if string(a) != string(b) {
		t.Error("the page inlines another document than --json prints")
	}
	if st, err := os.Stat(page); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("page mode %v (%v), want 0644: it is a file to share", st.Mode().Perm(), err)
	}

	// an existing file is kept without --force, replaced with it
	if err := os.WriteFile(page, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, false, args...)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("replacing without --force: err = %v", err)
	}
	if got, _ := os.ReadFile(page); string(got) != "mine" {
		t.Error("the existing file was changed without --force")
	}
	out, _, err = run(t, false, append(args, "--force")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "== summary ==") || !strings.Contains(out, "wrote "+page) {
		t.Errorf("text output with --html lacks the summary or the note:\n%s", out)
	}
	inlinedDoc(t, page)

	// a directory that does not exist is refused before the model loads
	_, _, err = run(t, false, "compare", "-m", "/no/such/model.gguf", goldenA, goldenB, "--html", filepath.Join(dir, "nope", "r.html"))
	if err == nil || !strings.Contains(err.Error(), "--html") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("--html in a missing directory: err = %v", err)
	}

	// comparisons the page has no view of are refused, not ignored
	_, _, err = run(t, false, "compare", "-m", model, "--model-b", model, goldenA, goldenB, "--html", filepath.Join(dir, "mb.html"))
	if err == nil || !strings.Contains(err.Error(), "--model-b") {
		t.Errorf("--html with --model-b: err = %v", err)
	}

	// --plot and --html on one file
	_, _, err = run(t, false, "patch", "-m", model, "--clean", goldenA, "--corrupt", goldenB, "--answer", " she",
		"--plot", filepath.Join(dir, "x.svg"), "--html", filepath.Join(dir, "x.svg"))
	if err == nil || !strings.Contains(err.Error(), "different files") {
		t.Errorf("--plot and --html on one file: err = %v", err)
	}
}
