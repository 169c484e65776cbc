package analysis

import (
	"fmt"
	"math"
	"path/filepath"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/models"
)

// NonFiniteError says that a model produces NaN or infinite values, and
// where they first appear. Every number computed from such a value is NaN
// too, so an analysis stops at it instead of printing tables of NaN or
// blaming its own inputs (a metric without difference, a control vector's
// scale).
type NonFiniteError struct {
	// Model is the model file.
	Model string
	// Hook is the first activation, in the order the model computes them,
	// that holds a non-finite value ("logits" when only the logits do);
	// Pos the first such position, Value the value there.
	Hook  string
	Pos   int
	Value float32
	// Tokens is the length of the sequence it was found in.
	Tokens int
}

func (e *NonFiniteError) Error() string {
	what := "NaN"
	if !math.IsNaN(float64(e.Value)) {
		what = "infinite values"
	}
	at := ""
	if e.Pos >= 0 {
		at = fmt.Sprintf(" (first at position %d of %d)", e.Pos, e.Tokens)
	}
	where := fmt.Sprintf("from %s on%s", e.Hook, at)
	cause := "its weights or hyperparameters are broken"
	if e.Hook == "logits" {
		where = fmt.Sprintf("in its logits%s although every layer's output is finite", at)
		cause = "the final norm or the output matrix is broken"
	}
	return fmt.Sprintf("%s produces %s %s: every number computed from them is NaN or infinite too, so no comparison, patch or direction would mean anything; %s (lldiff capture -m %s --hooks resid_pre,attn_out,mlp_out,resid_post -o DIR \"PROMPT\" writes the values layer by layer)",
		filepath.Base(e.Model), what, where, cause, e.Model)
}

// firstNonFinite returns the first hook of c (in model order) holding a
// NaN or an infinity, the row and the value.
func firstNonFinite(c *models.Cache) (h models.Hook, row int, v float32, found bool) {
	for _, h := range c.Hooks() {
		a, _ := c.At(h)
		if i := nonFiniteIndex(a.Data); i >= 0 {
			return h, i / max(a.Width, 1), a.Data[i], true
		}
	}
	return models.Hook{}, 0, 0, false
}

// nonFiniteIndex returns the index of the first NaN or infinity of x, or
// -1.
func nonFiniteIndex(x []float32) int {
	for i, v := range x {
		if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
			return i
		}
	}
	return -1
}

// CheckFinite returns a *NonFiniteError when one of the caches (each over
// its whole token sequence, Cache.Tokens) holds a NaN or an infinity. It
// then runs that sequence once more, alone, capturing every layer's
// activations, to say where the values first become non-finite; the check
// itself is a scan of what was captured.
func CheckFinite(e models.Engine, caches ...*models.Cache) error {
	for _, c := range caches {
		h, row, v, bad := firstNonFinite(c)
		if !bad {
			continue
		}
		err := &NonFiniteError{Model: e.Path(), Hook: h.Name(), Pos: row, Value: v, Tokens: len(c.Tokens)}
		if h.Kind == models.Logits {
			err.Hook = "logits"
		}
		locateNonFinite(e, c.Tokens, err)
		return err
	}
	return nil
}

// locateNonFinite runs seq capturing every per-layer activation and
// updates err with the first one that is not finite. When the run fails,
// err keeps what the caller found.
func locateNonFinite(e models.Engine, seq []int32, err *NonFiniteError) {
	if len(seq) == 0 {
		return
	}
	info, table := e.ModelInfo(), e.HookTable()
	var hooks []models.Hook
	for l := range info.NLayer {
		for _, k := range models.LayerKinds {
			if k != models.Z && table.Has(k) {
				hooks = append(hooks, models.Hook{Kind: k, Layer: l})
			}
		}
	}
	hooks = append(hooks, models.Hook{Kind: models.Logits, Layer: -1})
	r, rerr := e.NewRunner([][]int32{seq}, 1)
	if rerr != nil {
		return
	}
	defer r.Close()
	cs, rerr := r.Run([][]int32{seq}, hooks)
	if rerr != nil || len(cs) != 1 {
		return
	}
	h, row, v, bad := firstNonFinite(cs[0])
	if !bad {
		return
	}
	err.Hook, err.Pos, err.Value, err.Tokens = h.Name(), row, v, len(seq)
	if h.Kind == models.Logits {
		err.Hook = "logits"
	}
}

// checkSamplesFinite is CheckFinite for the rows a contrast collected:
// the first hook (in model order) whose rows hold a non-finite value names
// the prompt it came from, which is run again to locate the first layer.
func checkSamplesFinite(e models.Engine, hooks []models.Hook, cd *ContrastData, sets ...map[models.Hook]*contrast.Samples) error {
	for _, h := range hooks {
		for side, set := range sets {
			s := set[h]
			if s == nil {
				continue
			}
			i := nonFiniteIndex(s.Data)
			if i < 0 {
				continue
			}
			row := i / max(s.D, 1)
			ids := cd.IDsA
			if side == 1 {
				ids = cd.IDsB
			}
			prompt := 0
			if row < len(s.Groups) {
				prompt = s.Groups[row]
			}
			var seq []int32
			if prompt < len(ids) {
				seq = ids[prompt]
			}
			err := &NonFiniteError{Model: e.Path(), Hook: h.Name(), Pos: -1, Value: s.Data[i], Tokens: len(seq)}
			locateNonFinite(e, seq, err)
			return err
		}
	}
	return nil
}
