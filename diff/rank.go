package diff

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/lldiff/lldiff/models"
)

// PosMetrics are the metrics of one hook at one position pair.
type PosMetrics struct {
	Pair         PosPair
	L2           float64 // ‖a−b‖
	RelL2        float64 // ‖a−b‖ / mean(‖a‖, ‖b‖), see RelDist
	Cosine       float64 // see Cosine
	NormA, NormB float64 // ‖a‖, ‖b‖
}

// Component is the difference between prompts A and B at one hook.
//
// The aggregate fields treat the compared rows of each prompt as one long
// vector: L2, NormA and NormB are Frobenius norms (the square root of the sum
// of the per-pair squares), RelL2 is L2 / mean(NormA, NormB), and Cosine is
// the cosine of the concatenated rows. With one pair they equal PerPos[0].
type Component struct {
	Hook         models.Hook
	L2           float64
	RelL2        float64
	Cosine       float64
	NormA, NormB float64
	PerPos       []PosMetrics // one per pair, in the order of the pairs
}

// Compare returns one Component per hook, in the order of hooks, comparing
// the rows pairs[i].A of a with the rows pairs[i].B of b. If hooks is empty,
// every hook captured in a is compared. Pairs are resolved indices, as
// returned by ParsePositions.
//
// A hook missing from either cache, activations of different widths, a
// malformed activation or a position beyond an activation's rows is an
// error that names the hook and the reason.
func Compare(a, b *models.Cache, hooks []models.Hook, pairs []PosPair) ([]Component, error) {
	if a == nil {
		return nil, fmt.Errorf("compare: no activation cache for prompt A")
	}
	if b == nil {
		return nil, fmt.Errorf("compare: no activation cache for prompt B")
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("compare: no positions to compare")
	}
	if len(hooks) == 0 {
		hooks = a.Hooks()
		if len(hooks) == 0 {
			return nil, fmt.Errorf("compare: prompt A has no captured activations")
		}
	}
	comps := make([]Component, len(hooks))
	for i, h := range hooks {
		actA, err := activation(a, h, "A")
		if err != nil {
			return nil, err
		}
		actB, err := activation(b, h, "B")
		if err != nil {
			return nil, err
		}
		if actA.Width != actB.Width {
			return nil, fmt.Errorf("hook %s: widths differ: prompt A has %d, prompt B has %d (were both captured from the same model?)",
				h.Name(), actA.Width, actB.Width)
		}
		c := Component{Hook: h, PerPos: make([]PosMetrics, len(pairs))}
		var total sums
		for j, p := range pairs {
			if err := checkRow(actA, h, p, p.A, "A"); err != nil {
				return nil, err
			}
			if err := checkRow(actB, h, p, p.B, "B"); err != nil {
				return nil, err
			}
			var s sums
			s.add(actA.Row(p.A), actB.Row(p.B))
			c.PerPos[j] = PosMetrics{Pair: p, L2: s.l2(), RelL2: s.rel(), Cosine: s.cosine(), NormA: s.normA(), NormB: s.normB()}
			total.d2 += s.d2
			total.aa += s.aa
			total.bb += s.bb
			total.ab += s.ab
		}
		c.L2, c.RelL2, c.Cosine, c.NormA, c.NormB = total.l2(), total.rel(), total.cosine(), total.normA(), total.normB()
		comps[i] = c
	}
	return comps, nil
}

// activation returns the well-formed activation of hook h in c.
func activation(c *models.Cache, h models.Hook, name string) (*models.Activation, error) {
	act, ok := c.At(h)
	if !ok || act == nil {
		return nil, fmt.Errorf("hook %s: not captured for prompt %s; add it to --hooks", h.Name(), name)
	}
	if act.Width <= 0 {
		return nil, fmt.Errorf("hook %s: prompt %s's activation has width %d", h.Name(), name, act.Width)
	}
	if len(act.Data)%act.Width != 0 {
		return nil, fmt.Errorf("hook %s: prompt %s's activation has %d values, not a multiple of its width %d",
			h.Name(), name, len(act.Data), act.Width)
	}
	return act, nil
}

// checkRow reports an error if row is not a row of act.
func checkRow(act *models.Activation, h models.Hook, p PosPair, row int, name string) error {
	if n := act.Rows(); row < 0 || row >= n {
		return fmt.Errorf("hook %s: position pair %d:%d: position %d is out of range for prompt %s, whose activation has %d rows (0..%d)",
			h.Name(), p.A, p.B, row, name, n, n-1)
	}
	return nil
}

// Ranking orders accepted by Rank.
const (
	ByRel    = "rel"    // RelL2, largest first (the default)
	ByL2     = "l2"     // L2, largest first
	ByCosine = "cosine" // Cosine, smallest first
)

// Rank returns a copy of comps sorted so that the most changed component
// comes first: descending by RelL2 for "rel" or "" (the default), descending
// by L2 for "l2", ascending by Cosine for "cosine". Ties are broken by model
// order: layer, then the kind order of models.LayerKinds, model-level hooks
// last. A NaN metric, from NaN or Inf activations, sorts first so that a
// broken capture is not hidden at the bottom of a table. The PerPos slices
// are shared with comps.
func Rank(comps []Component, by string) ([]Component, error) {
	var key func(c *Component) float64
	desc := true
	switch by {
	case "", ByRel:
		key = func(c *Component) float64 { return c.RelL2 }
	case ByL2:
		key = func(c *Component) float64 { return c.L2 }
	case ByCosine:
		key, desc = func(c *Component) float64 { return c.Cosine }, false
	default:
		return nil, fmt.Errorf("rank by %q: accepted %s (default), %s, %s", by, ByRel, ByL2, ByCosine)
	}
	out := slices.Clone(comps)
	slices.SortStableFunc(out, func(x, y Component) int {
		kx, ky := key(&x), key(&y)
		nx, ny := math.IsNaN(kx), math.IsNaN(ky)
		switch {
		case nx && !ny:
			return -1
		case ny && !nx:
			return 1
		case !nx && kx != ky:
			if desc {
				return cmp.Compare(ky, kx)
			}
			return cmp.Compare(kx, ky)
		}
		return hookCmp(x.Hook, y.Hook)
	})
	return out, nil
}

// hookCmp compares hooks in model order: layer, then kind order within a
// layer, model-level hooks last.
func hookCmp(a, b models.Hook) int {
	if c := cmp.Compare(layerKey(a), layerKey(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(kindIndex(a.Kind), kindIndex(b.Kind)); c != 0 {
		return c
	}
	return cmp.Compare(a.Kind, b.Kind)
}

func layerKey(h models.Hook) int {
	if !h.Kind.PerLayer() || h.Layer < 0 {
		return math.MaxInt
	}
	return h.Layer
}

// kindIndex is k's position in models.LayerKinds followed by
// models.ModelKinds; unknown kinds come after both.
func kindIndex(k models.Kind) int {
	if i := slices.Index(models.LayerKinds, k); i >= 0 {
		return i
	}
	if i := slices.Index(models.ModelKinds, k); i >= 0 {
		return len(models.LayerKinds) + i
	}
	return len(models.LayerKinds) + len(models.ModelKinds)
}

// LayerRow is the relative change of every compared kind at one layer.
type LayerRow struct {
	Layer int                     // -1 for the model-level hooks (ln_final, logits)
	Rel   map[models.Kind]float64 // RelL2 by kind
}

// ByLayer groups the RelL2 of comps by layer, in ascending layer order. The
// model-level hooks, if any, come last in one row with Layer -1. If a hook
// occurs twice, the later component wins.
func ByLayer(comps []Component) []LayerRow {
	var rows []LayerRow
	index := map[int]int{} // layer → row
	for _, c := range comps {
		l := c.Hook.Layer
		if !c.Hook.Kind.PerLayer() || l < 0 {
			l = -1
		}
		i, ok := index[l]
		if !ok {
			i = len(rows)
			index[l] = i
			rows = append(rows, LayerRow{Layer: l, Rel: map[models.Kind]float64{}})
		}
		rows[i].Rel[c.Hook.Kind] = c.RelL2
	}
	slices.SortFunc(rows, func(x, y LayerRow) int {
		return cmp.Compare(rowKey(x.Layer), rowKey(y.Layer))
	})
	return rows
}

func rowKey(l int) int {
	if l < 0 {
		return math.MaxInt
	}
	return l
}
