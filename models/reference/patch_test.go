package reference

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func randomRow(rng *rand.Rand, n int) []float32 {
	r := make([]float32, n)
	for i := range r {
		r[i] = float32(rng.NormFloat64())
	}
	return r
}

// TestRunPatchedIdentity checks that replacing rows with the values the
// model computes changes nothing, to the bit: the replacement is a copy of
// the same float32 values.
func TestRunPatchedIdentity(t *testing.T) {
	m := randomModel(smallConfig, 3)
	toks := []int32{1, 4, 2, 9, 3}
	want := mustRun(t, m, toks)
	for _, name := range want.Names() {
		rows := mustGet(t, want, name)
		got, err := m.RunPatched(toks, []Replacement{{Hook: name, Pos: 2, Row: slices.Clone(rows[2])}})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range want.Names() {
			if err := Compare(n, mustGet(t, got, n), mustGet(t, want, n), 0); err != nil {
				t.Errorf("replacing %s by itself: %v", name, err)
			}
		}
	}
}

// TestRunPatchedFlowsDownstream checks what a replacement changes: nothing
// before its position (causal attention) or before its hook, the replaced
// row itself exactly, and the later hooks at and after its position.
func TestRunPatchedFlowsDownstream(t *testing.T) {
	m := randomModel(smallConfig, 4)
	toks := []int32{1, 4, 2, 9, 3}
	clean := mustRun(t, m, toks)
	rng := rand.New(rand.NewPCG(9, 9))
	const pos = 2
	row := randomRow(rng, smallConfig.DModel)
	got, err := m.RunPatched(toks, []Replacement{{Hook: "blocks.1.hook_attn_out", Pos: pos, Row: row}})
	if err != nil {
		t.Fatal(err)
	}
	if g := mustGet(t, got, "blocks.1.hook_attn_out")[pos]; !slices.Equal(g, row) {
		t.Fatalf("the replaced row is %v, want %v", g, row)
	}
	for _, name := range clean.Names() {
		g, w := mustGet(t, got, name), mustGet(t, clean, name)
		for p := range toks {
			same := slices.Equal(g[p], w[p])
			// before the hook (layer 0, resid_pre.1, the attention of
			// layer 1) or before the position: untouched
			before := p < pos || strings.HasPrefix(name, "blocks.0.") || name == "blocks.1.hook_resid_pre" || name == "blocks.1.attn.hook_z"
			if before && !same {
				t.Errorf("%s at position %d changed; it comes before the replacement", name, p)
			}
			// at the position, everything computed from the row changes
			if p == pos && !before && same {
				t.Errorf("%s at position %d did not change; it reads the replacement", name, p)
			}
		}
	}
	// a later position sees the replacement through the attention of layer 2
	if slices.Equal(mustGet(t, got, "blocks.2.attn.hook_z")[pos+1], mustGet(t, clean, "blocks.2.attn.hook_z")[pos+1]) {
		t.Error("blocks.2.attn.hook_z at the next position did not change; attention should carry the replacement forward")
	}
}

// TestRunPatchedLastLayer checks a replacement of the last resid_post by
// hand: the logits at its position are W_U·RMSNorm(row)·γ, computed here
// with the package's own helpers.
func TestRunPatchedLastLayer(t *testing.T) {
	m := randomModel(smallConfig, 5)
	toks := []int32{1, 4, 2}
	row := randomRow(rand.New(rand.NewPCG(1, 2)), smallConfig.DModel)
	last := fmt.Sprintf("blocks.%d.hook_resid_post", smallConfig.NLayer-1)
	got, err := m.RunPatched(toks, []Replacement{{Hook: last, Pos: 1, Row: row}})
	if err != nil {
		t.Fatal(err)
	}
	want := m.unembed.apply(rmsNorm(row, m.outputNorm, m.Config.NormEps))
	if err := Compare("logits", mustGet(t, got, "logits")[1:2], [][]float32{want}, 0); err != nil {
		t.Error(err)
	}
}

// TestRunPatchedResidAlias checks that resid_pre of layer L+1 and resid_post
// of layer L are one activation, as they are one node in llama.cpp.
func TestRunPatchedResidAlias(t *testing.T) {
	m := randomModel(smallConfig, 6)
	toks := []int32{1, 4, 2}
	row := randomRow(rand.New(rand.NewPCG(3, 4)), smallConfig.DModel)
	a, err := m.RunPatched(toks, []Replacement{{Hook: "blocks.2.hook_resid_pre", Pos: 1, Row: row}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.RunPatched(toks, []Replacement{{Hook: "blocks.1.hook_resid_post", Pos: 1, Row: row}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range a.Names() {
		if err := Compare(name, mustGet(t, a, name), mustGet(t, b, name), 0); err != nil {
			t.Error(err)
		}
	}
	if !slices.Equal(mustGet(t, a, "blocks.1.hook_resid_post")[1], row) {
		t.Error("replacing blocks.2.hook_resid_pre did not show in blocks.1.hook_resid_post")
	}
}

func TestRunPatchedErrors(t *testing.T) {
	m := randomModel(smallConfig, 7)
	toks := []int32{1, 4, 2}
	row := make([]float32, smallConfig.DModel)
	for _, tc := range []struct {
		name string
		reps []Replacement
		want string
	}{
		{"unknown hook", []Replacement{{Hook: "blocks.9.hook_resid_post", Pos: 0, Row: row}}, "no hook"},
		{"position", []Replacement{{Hook: "blocks.0.hook_resid_post", Pos: 3, Row: row}}, "3 tokens"},
		{"width", []Replacement{{Hook: "blocks.0.hook_resid_post", Pos: 0, Row: row[:3]}}, "width 3"},
		{"twice", []Replacement{{Hook: "blocks.0.hook_resid_post", Pos: 0, Row: row}, {Hook: "blocks.1.hook_resid_pre", Pos: 0, Row: row}}, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.RunPatched(toks, tc.reps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
