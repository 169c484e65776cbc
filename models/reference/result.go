package reference

import (
	"fmt"
	"math"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// Result holds the activations of one Run: for every hook, one row per
// position ([position][width]).
type Result struct {
	Tokens []int32 // the tokens that were run, position by position
	nLayer int
	names  []string
	acts   map[string][][]float32
	edit   func(name string, rows [][]float32)
}

func (r *Result) add(name string, rows [][]float32) {
	if r.edit != nil {
		r.edit(name, rows)
	}
	r.names = append(r.names, name)
	r.acts[name] = rows
}

// Get returns the activation of the hook with the given full TransformerLens
// name ("blocks.3.hook_resid_post", "blocks.3.attn.hook_z",
// "ln_final.hook_normalized", "logits"), indexed [position][i]. The rows are
// the Result's own: copy them before changing them.
func (r *Result) Get(name string) ([][]float32, bool) {
	rows, ok := r.acts[name]
	return rows, ok
}

// Names returns the full names of all hooks in the order the model computes
// them: per layer resid_pre, attn.hook_z, attn_out, resid_mid, mlp_out,
// resid_post; then ln_final.hook_normalized and logits.
func (r *Result) Names() []string { return append([]string(nil), r.names...) }

// Cache returns a copy of the activations as a models.Cache, the form
// lldiff's captures take, so that the reference can stand in for a capture.
func (r *Result) Cache() *models.Cache {
	c := models.NewCache(r.Tokens, r.nLayer)
	for _, name := range r.names {
		hooks, err := models.ParseHook(name, r.nLayer)
		if err != nil || len(hooks) != 1 {
			panic(fmt.Sprintf("reference: hook name %q does not parse as one models.Hook: %v", name, err))
		}
		rows := r.acts[name]
		a := &models.Activation{Hook: hooks[0], Width: len(rows[0])}
		for _, row := range rows {
			a.Data = append(a.Data, row...)
		}
		c.Set(a)
	}
	return c
}

// RelL2 returns the relative L2 error ‖got−want‖ / ‖want‖, accumulated in
// float64. When want is all zeros it returns 0 if got is all zeros too and
// +Inf otherwise. A NaN in either vector gives NaN. RelL2 panics if the
// lengths differ.
func RelL2(got, want []float32) float64 {
	if len(got) != len(want) {
		panic(fmt.Sprintf("reference.RelL2: lengths %d and %d differ", len(got), len(want)))
	}
	var diff, norm float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		diff += d * d
		norm += float64(want[i]) * float64(want[i])
	}
	if norm == 0 && !math.IsNaN(diff) {
		if diff == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Sqrt(diff / norm)
}

// Compare checks an activation position by position: for every position p,
// RelL2(got[p], want[p]) must be at most tol. It returns nil when they all are,
// and otherwise an error naming the hook, the number of failing positions, the
// worst position with its relative error and norms, and the element there with
// the largest absolute difference. Different shapes (positions or widths) are
// an error too, and so is a NaN anywhere.
func Compare(name string, got, want [][]float32, tol float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: %d positions, want %d", name, len(got), len(want))
	}
	worst, worstErr, failing := -1, 0.0, 0
	for p := range want {
		if len(got[p]) != len(want[p]) {
			return fmt.Errorf("%s: position %d has width %d, want %d", name, p, len(got[p]), len(want[p]))
		}
		e := RelL2(got[p], want[p])
		if math.IsNaN(e) {
			e = math.Inf(1) // NaN compares false with everything: count it as the worst error
		}
		if e > tol {
			failing++
		}
		if worst < 0 || e > worstErr {
			worst, worstErr = p, e
		}
	}
	if failing == 0 {
		return nil
	}
	g, w := got[worst], want[worst]
	at, maxAbs := 0, -1.0
	for i := range w {
		d := math.Abs(float64(g[i]) - float64(w[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > maxAbs {
			at, maxAbs = i, d
		}
	}
	return fmt.Errorf("%s: %d of %d positions differ by more than relative L2 %.3g; worst is position %d: "+
		"relative L2 %.3g (‖got−want‖ %.4g, ‖want‖ %.4g); largest difference there at [%d]: got %g, want %g",
		name, failing, len(want), tol, worst, worstErr, diff.Dist(g, w), diff.Norm(w), at, g[at], w[at])
}
