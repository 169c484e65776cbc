package reference

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/testmodels"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current reference")

// golden is a compact fingerprint of a Result: every hook's L2 norm per
// position, and the logits of the last position in full.
type golden struct {
	Tokens     []int32              `json:"tokens"`
	Norms      map[string][]float64 `json:"norms"`
	LastLogits []float32            `json:"last_logits"`
}

func fingerprint(t *testing.T, r *Result) golden {
	g := golden{Tokens: r.Tokens, Norms: map[string][]float64{}}
	for _, name := range r.Names() {
		for _, row := range mustGet(t, r, name) {
			g.Norms[name] = append(g.Norms[name], diff.Norm(row))
		}
	}
	logits := mustGet(t, r, "logits")
	g.LastLogits = logits[len(logits)-1]
	return g
}

// TestGoldenStories260K guards the reference against unintended changes: it
// compares a run of stories260K with testdata/stories260K.golden.json, written
// by `go test -run Golden -update` from a reference that the other tests
// (and the comparison with llama.cpp) vouch for.
func TestGoldenStories260K(t *testing.T) {
	m := mustLoad(t, testmodels.Path(t, testmodels.Stories260K))
	got := fingerprint(t, mustRun(t, m, []int32{1, 403, 407, 261, 378, 432, 383, 286}))
	path := filepath.Join("testdata", "stories260K.golden.json")
	if *update {
		b, err := json.MarshalIndent(got, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	var want golden
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !slices.Equal(got.Tokens, want.Tokens) {
		t.Fatalf("tokens %v, golden %v", got.Tokens, want.Tokens)
	}
	// 1e-6 relative: the reference is deterministic, but math.Exp, Pow and
	// Sincos may differ in the last bit between platforms.
	const tol = 1e-6
	if len(got.Norms) != len(want.Norms) {
		t.Errorf("%d hooks, golden has %d", len(got.Norms), len(want.Norms))
	}
	for name, w := range want.Norms {
		g := got.Norms[name]
		if len(g) != len(w) {
			t.Errorf("%s: %d positions, golden has %d", name, len(g), len(w))
			continue
		}
		for p := range w {
			if math.Abs(g[p]-w[p]) > tol*w[p] {
				t.Errorf("%s position %d: norm %.9g, golden %.9g", name, p, g[p], w[p])
			}
		}
	}
	if err := Compare("last logits", [][]float32{got.LastLogits}, [][]float32{want.LastLogits}, tol); err != nil {
		t.Error(err)
	}
}
