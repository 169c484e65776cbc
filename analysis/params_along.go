package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// pairActs are the activations of an --along prompt pair that params
// needs: the direction (A − B at the hook), the MLP's input and output and
// the heads' outputs z and attn_out, at the compared positions.
type pairActs struct {
	dir            []float32
	pos            [2]int
	mlpInA, mlpInB []float32
	mlpA, mlpB     []float32
	zA, zB         []float32
	attnA, attnB   []float32
}

// runAlongPair runs the two prompts of o.Along on e and returns the rows
// params needs at o.Pos.
func runAlongPair(e models.Engine, info *models.Info, t *paramTensors, hook models.Hook, o ParamsOptions) (*pairActs, error) {
	l := o.Layer
	in := models.Hook{Kind: models.ResidMid, Layer: l}
	if t.parallel {
		in.Kind = models.ResidPre // the MLP reads the layer's input
	}
	hooks := []models.Hook{hook, in,
		{Kind: models.MLPOut, Layer: l}, {Kind: models.Z, Layer: l}, {Kind: models.AttnOut, Layer: l}}
	for _, h := range hooks {
		if err := e.HookTable().Check(h.Kind); err != nil {
			return nil, &InputError{Err: err}
		}
	}
	hooks = models.SortHooks(uniqueHooks(hooks))
	if o.Pos.All || len(o.Pos.Indices) != 1 {
		return nil, inputErr("--pos for a prompt pair takes one position (last, or an index such as -2)")
	}
	ids, err := TokenizePrompts(e, o.Tokenize, o.Along.Prompts[0], o.Along.Prompts[1])
	if err != nil {
		return nil, err
	}
	pa := &pairActs{}
	var pos [][]int
	for i, s := range ids {
		rs, err := o.Pos.Resolve(len(s))
		if err != nil {
			return nil, inputErr("%q: %v", o.Along.Prompts[i], err)
		}
		pa.pos[i] = rs[0]
		pos = append(pos, []int{rs[0]})
	}
	run, err := e.NewRunner(ids, len(ids))
	if err != nil {
		return nil, err
	}
	defer run.Close()
	rows, err := run.RunRows(ids, pos, hooks)
	if err != nil {
		return nil, err
	}
	get := func(r *models.SeqRows, h models.Hook) ([]float32, error) {
		a, ok := r.Acts[h]
		if !ok {
			return nil, fmt.Errorf("analysis: the engine returned no %s", h.Name())
		}
		row := a.Row(0)
		for i, x := range row {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%s has a non-finite value (%v at %d) at %s: the model overflowed on these prompts", e.Path(), x, i, h.Short())
			}
		}
		return row, nil
	}
	var ra, rb [5][]float32
	want := []models.Hook{hook, in, {Kind: models.MLPOut, Layer: l}, {Kind: models.Z, Layer: l}, {Kind: models.AttnOut, Layer: l}}
	for i, h := range want {
		if ra[i], err = get(rows[0], h); err != nil {
			return nil, err
		}
		if rb[i], err = get(rows[1], h); err != nil {
			return nil, err
		}
	}
	pa.dir = diff.SubTo(make([]float32, len(ra[0])), ra[0], rb[0])
	pa.mlpInA, pa.mlpInB = ra[1], rb[1]
	pa.mlpA, pa.mlpB = ra[2], rb[2]
	pa.zA, pa.zB = ra[3], rb[3]
	pa.attnA, pa.attnB = ra[4], rb[4]
	return pa, nil
}

func uniqueHooks(hs []models.Hook) []models.Hook {
	seen := map[models.Hook]bool{}
	var out []models.Hook
	for _, h := range hs {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// neuronActs computes the activation of every neuron of the layer for the
// MLP inputs of the pair, from the weights: x = norm(input), then
// silu(gate·x)·(up·x) or gelu(up·x + b).
func neuronActs(w *models.Weights, info *models.Info, t *paramTensors, p *pairActs, dff int) (a, b []float64, err error) {
	d := info.DModel
	gamma, err := w.Vector(t.ffnNorm, d)
	if err != nil {
		return nil, nil, err
	}
	var beta, upBias []float32
	if t.layerNorm {
		if beta, err = w.Vector(t.ffnBias, d); err != nil {
			return nil, nil, err
		}
		if upBias, err = w.Vector(t.upBias, dff); err != nil {
			return nil, nil, err
		}
	}
	xa := normalize(p.mlpInA, gamma, beta, info.NormEps, t.layerNorm)
	xb := normalize(p.mlpInB, gamma, beta, info.NormEps, t.layerNorm)
	up, err := projectRows(w, t.up, [][]float32{xa, xb})
	if err != nil {
		return nil, nil, err
	}
	var gate [][]float32
	if t.gate != "" {
		if gate, err = projectRows(w, t.gate, [][]float32{xa, xb}); err != nil {
			return nil, nil, err
		}
	}
	act := func(s int) []float64 {
		out := make([]float64, dff)
		for n := range out {
			if gate != nil {
				out[n] = silu(float64(gate[s][n])) * float64(up[s][n])
			} else {
				out[n] = gelu(float64(up[s][n]) + float64(upBias[n]))
			}
		}
		return out
	}
	return act(0), act(1), nil
}

// alongHeads returns, for every head, the largest cosine between unit and
// the head's write space (the column space of W_O^h), and with prompts
// the head's contribution along unit. One pass over W_O accumulates
// W_O^hᵀ û and each head's Gram matrix W_O^hᵀ W_O^h.
func alongHeads(w *models.Weights, info *models.Info, t *paramTensors, unit []float32, p *pairActs, res *AlongResult) ([]AlongHead, error) {
	nh, dh := info.NHead, info.DHead
	rows, cols, err := w.Shape(t.out)
	if err != nil {
		return nil, err
	}
	if rows != info.DModel || cols != nh*dh {
		return nil, fmt.Errorf("%s has %d rows of %d, want %d of %d (d_model rows of n_head × d_head)", t.out, rows, cols, info.DModel, nh*dh)
	}
	proj := make([]float64, cols)
	gram := make([]float64, nh*dh*dh)
	err = w.EachRows(t.out, rowBlock(cols), func(r0 int, blk []float32) error {
		for r := 0; r < len(blk)/cols; r++ {
			row := blk[r*cols : (r+1)*cols]
			ur := float64(unit[r0+r])
			for c, x := range row {
				proj[c] += float64(x) * ur
			}
		}
		parallelFor(nh, func(lo, hi int) {
			for h := lo; h < hi; h++ {
				g := gram[h*dh*dh : (h+1)*dh*dh]
				for r := 0; r < len(blk)/cols; r++ {
					seg := blk[r*cols+h*dh : r*cols+(h+1)*dh]
					for i, x := range seg {
						xi := float64(x)
						gi := g[i*dh : (i+1)*dh]
						for j := i; j < dh; j++ {
							gi[j] += xi * float64(seg[j])
						}
					}
				}
			}
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]AlongHead, nh)
	var sum float64
	for h := range nh {
		g := mat.NewSymDense(dh, nil)
		for i := range dh {
			for j := i; j < dh; j++ {
				g.SetSym(i, j, gram[h*dh*dh+i*dh+j])
			}
		}
		tv := proj[h*dh : (h+1)*dh]
		out[h] = AlongHead{Head: h, KVHead: h / (nh / info.NHeadKV), Cos: subspaceCos(g, tv)}
		if p != nil {
			var c float64
			for i := range dh {
				c += (float64(p.zA[h*dh+i]) - float64(p.zB[h*dh+i])) * tv[i]
			}
			out[h].Contribution = &c
			sum += c
		}
	}
	if p != nil {
		a := diff.Dot(diff.SubTo(make([]float32, len(unit)), p.attnA, p.attnB), unit)
		res.AttnOut, res.HeadSum = &a, &sum
	}
	return out, nil
}

// subspaceCos returns ‖P û‖ for a unit vector û, where P projects onto
// the column space of a matrix O with Gram matrix g = OᵀO and tv = Oᵀû:
// ‖P û‖² = tvᵀ g⁺ tv, the pseudo-inverse taken over the eigenvalues
// above 1e-10 of the largest (directions O does not span are ignored).
func subspaceCos(g *mat.SymDense, tv []float64) float64 {
	var es mat.EigenSym
	if !es.Factorize(g, true) {
		return math.NaN()
	}
	vals := es.Values(nil)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	top := 0.0
	for _, l := range vals {
		top = max(top, l)
	}
	var s float64
	for k, l := range vals {
		if l <= 1e-10*top {
			continue
		}
		var c float64
		for i := range tv {
			c += vecs.At(i, k) * tv[i]
		}
		s += c * c / l
	}
	return math.Min(1, math.Sqrt(s))
}
