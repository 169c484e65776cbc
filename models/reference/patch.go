package reference

import (
	"fmt"
	"strings"
)

// Replacement replaces one row of one activation during RunPatched.
type Replacement struct {
	// Hook is the full TransformerLens name ("blocks.2.hook_resid_post",
	// "blocks.0.attn.hook_z", "ln_final.hook_normalized").
	Hook string
	// Pos is the token position whose row is replaced.
	Pos int
	// Row is the new row; its width must be the hook's.
	Row []float32
}

// RunPatched is Run with activation rows replaced as they are computed:
// every later step reads the replacement, as with a TransformerLens hook
// that returns a new value. It is the definition lldiff's patched llama.cpp
// runs are checked against.
//
// Replacements apply in the order the model computes its hooks. As in
// llama.cpp, where they are one graph node, blocks.L.hook_resid_post and
// blocks.L+1.hook_resid_pre are one activation: replacing a row of either
// changes both in the Result. A hook the model does not compute, a position
// outside the tokens, a width that does not match, or the same row replaced
// twice is an error.
func (m *Model) RunPatched(tokens []int32, reps []Replacement) (*Result, error) {
	return m.runPatched(tokens, reps, nil)
}

// runPatched is RunPatched; pre, when set, edits each hook's rows before
// the replacements (RunSteered adds a control vector with it).
func (m *Model) runPatched(tokens []int32, reps []Replacement, pre func(name string, rows [][]float32)) (*Result, error) {
	byHook := map[string][]int{}
	for i, rep := range reps {
		byHook[rep.Hook] = append(byHook[rep.Hook], i)
		if rep.Pos < 0 || rep.Pos >= len(tokens) {
			return nil, fmt.Errorf("reference: replacement of %s at position %d: the run has %d tokens", rep.Hook, rep.Pos, len(tokens))
		}
	}
	applied := make([]bool, len(reps))
	var err error
	edit := func(name string, rows [][]float32) {
		if pre != nil {
			pre(name, rows)
		}
		for _, i := range byHook[name] {
			rep := reps[i]
			row := rows[rep.Pos]
			if len(rep.Row) != len(row) {
				if err == nil {
					err = fmt.Errorf("reference: replacement of %s at position %d has width %d, the hook has %d", name, rep.Pos, len(rep.Row), len(row))
				}
				continue
			}
			// in place: the rows may be shared with the hook computed just
			// before (resid_post of the layer before)
			copy(row, rep.Row)
			applied[i] = true
		}
	}
	seen := map[string]bool{}
	for _, rep := range reps {
		key := fmt.Sprintf("%s@%d", canonical(rep.Hook), rep.Pos)
		if seen[key] {
			return nil, fmt.Errorf("reference: %s at position %d is replaced twice", rep.Hook, rep.Pos)
		}
		seen[key] = true
	}
	r, runErr := m.run(tokens, edit)
	if runErr != nil {
		return nil, runErr
	}
	if err != nil {
		return nil, err
	}
	for i, ok := range applied {
		if !ok {
			return nil, fmt.Errorf("reference: the model computes no hook %q (names: %s, ...)", reps[i].Hook, strings.Join(r.names[:min(3, len(r.names))], ", "))
		}
	}
	return r, nil
}

// canonical names the activation a hook name stands for:
// blocks.L+1.hook_resid_pre is blocks.L.hook_resid_post.
func canonical(name string) string {
	var l int
	if n, _ := fmt.Sscanf(name, "blocks.%d.hook_resid_pre", &l); n == 1 && l > 0 && name == fmt.Sprintf("blocks.%d.hook_resid_pre", l) {
		return fmt.Sprintf("blocks.%d.hook_resid_post", l-1)
	}
	return name
}
