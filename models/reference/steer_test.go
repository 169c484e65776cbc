package reference

import (
	"slices"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestRunSteered checks the control vector against its definition: adding v
// to resid_post.2 at every position is replacing each row of resid_post.2
// by row + v. Both sums are the same float32 additions, so every hook
// after it agrees exactly.
func TestRunSteered(t *testing.T) {
	m := mustLoad(t, testmodels.Path(t, testmodels.Stories260K))
	tokens := []int32{1, 403, 407, 261, 378}
	d := m.Config.DModel
	v := make([]float32, d)
	for i := range v {
		v[i] = float32(i%7) - 3
	}
	add := make([][]float32, 3)
	add[2] = v
	got, err := m.RunSteered(tokens, nil, add)
	if err != nil {
		t.Fatal(err)
	}
	plain := mustRun(t, m, tokens)
	var reps []Replacement
	for p, row := range mustGet(t, plain, "blocks.2.hook_resid_post") {
		r := slices.Clone(row)
		for i := range r {
			r[i] += v[i]
		}
		reps = append(reps, Replacement{Hook: "blocks.2.hook_resid_post", Pos: p, Row: r})
	}
	want, err := m.RunPatched(tokens, reps)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"blocks.1.hook_resid_post", "blocks.2.hook_resid_post", "blocks.3.hook_resid_pre", "blocks.4.hook_mlp_out", "logits"} {
		g, w := mustGet(t, got, name), mustGet(t, want, name)
		for p := range g {
			if !slices.Equal(g[p], w[p]) {
				t.Fatalf("%s at %d differs from the patched run", name, p)
			}
		}
	}
	if slices.Equal(mustGet(t, got, "logits")[4], mustGet(t, plain, "logits")[4]) {
		t.Error("the vector changed nothing")
	}
}

// TestGenerateSteered: Generate is greedy decoding (the test's own greedy
// loop gives the same tokens), and a control vector of zeros changes
// nothing while layer 0 is refused, as llama.cpp does.
func TestGenerateSteered(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	e, err := NewEngine(path)
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int32{1, 403, 407, 261, 378}
	r, err := e.NewRunner([][]int32{prompt}, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := r.(models.Generator)
	nl, d := e.ModelInfo().NLayer, e.ModelInfo().DModel
	zeros := make([][]float32, nl)
	for l := range zeros {
		zeros[l] = make([]float32, d)
	}
	if err := g.SetControlVector(zeros); err != nil {
		t.Fatal(err)
	}
	gen, err := g.Generate(prompt, models.GenerateOptions{N: 6, KeepLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := greedy(t, e.Model(), prompt, 6)
	if !slices.Equal(gen.Tokens, want[len(prompt):]) || len(gen.Logits) != 6 || !slices.Equal(gen.First, gen.Logits[0]) {
		t.Errorf("generated %v (%d logits), want %v", gen.Tokens, len(gen.Logits), want[len(prompt):])
	}
	bad := make([][]float32, nl)
	bad[0] = make([]float32, d)
	bad[0][0] = 1
	if err := g.SetControlVector(bad); err == nil {
		t.Error("a vector at layer 0 was taken")
	}
}
