package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/lldiff/lldiff/models"
)

// This file aligns the parameters of two models that share a vocabulary,
// after Dar, Geva et al. (2022), section 5: each layer's MLP is read in
// embedding space as the n_vocab × n_vocab matrix M = E W Wᵀ Eᵀ (E the
// unembedding, W the layer's write vectors, columns of ffn_down, or read
// vectors, rows of ffn_up), which does not depend on the order of the
// neurons, and the layers of the two models are compared by the Pearson
// correlation of their M. No n_vocab × n_vocab matrix is formed: with
// X = W Wᵀ (d × d) and the cross-Gram C = E_Aᵀ E_B (d_A × d_B),
//
//	⟨M_A, M_B⟩ = tr(X_A C X_B Cᵀ),  Σ M = sᵀ X s with s = Eᵀ 1,
//
// so everything is d × d.

// AlignOptions configure Align.
type AlignOptions struct {
	// Kind is "down" (write vectors) or "up" (read vectors).
	Kind string
}

// AlignResult is the document `params --align --json` prints.
type AlignResult struct {
	ModelA string `json:"model_a"`
	ModelB string `json:"model_b"`
	Kind   string `json:"kind"`
	// Corr[i][j] is the Pearson correlation of layer i of A and layer j of
	// B in embedding space; Match[i] is the j with the largest Corr[i][j].
	Corr  [][]float64 `json:"corr"`
	Match []int       `json:"match"`
}

// alignSide is one model's d × d matrices.
type alignSide struct {
	d  int
	xs []*mat.Dense // X_l = W_l W_lᵀ per layer
	s  *mat.VecDense
}

// gram returns X = W Wᵀ for the layer's write (columns of ffn_down) or
// read (rows of ffn_up) vectors, reading the tensor a block at a time.
func gram(w *models.Weights, name string, byRows bool) (*mat.Dense, error) {
	rows, cols, err := w.Shape(name)
	if err != nil {
		return nil, err
	}
	if byRows { // rows are the vectors (ffn_up): X = Σ_r row_r row_rᵀ
		x := mat.NewSymDense(cols, nil)
		err = w.EachRows(name, rowBlock(cols), func(r0 int, blk []float32) error {
			n := len(blk) / cols
			b := mat.NewDense(n, cols, nil)
			for i, v := range blk {
				b.Set(i/cols, i%cols, float64(v))
			}
			x.SymRankK(x, 1, b.T())
			return nil
		})
		return mat.DenseCopyOf(x), err
	}
	// columns are the vectors (ffn_down, rows d_model long of d_ff): X is
	// the Gram matrix of the rows
	all := mat.NewDense(rows, cols, nil)
	err = w.EachRows(name, rowBlock(cols), func(r0 int, blk []float32) error {
		for i, v := range blk {
			all.Set(r0+i/cols, i%cols, float64(v))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var x mat.Dense
	x.Mul(all, all.T())
	return &x, nil
}

// Align correlates every layer of wa with every layer of wb in embedding
// space. The two files must share a vocabulary (va and vb check it).
func Align(wa, wb *models.Weights, va, vb models.Vocab, o AlignOptions) (*AlignResult, error) {
	if o.Kind == "" {
		o.Kind = "down"
	}
	if o.Kind != "down" && o.Kind != "up" {
		return nil, inputErr("--align-kind %q: use down (the neurons' write vectors) or up (their read vectors)", o.Kind)
	}
	if va.NVocab() != vb.NVocab() {
		return nil, inputErr("the models do not share a vocabulary (%d and %d tokens): alignment in embedding space needs one", va.NVocab(), vb.NVocab())
	}
	for id := range int32(va.NVocab()) {
		if va.Text(id) != vb.Text(id) {
			return nil, inputErr("the models do not share a vocabulary: token %d is %q in one and %q in the other", id, va.Text(id), vb.Text(id))
		}
	}
	side := func(w *models.Weights) (*alignSide, *models.Unembedding, error) {
		info, err := w.File.Info()
		if err != nil {
			return nil, nil, err
		}
		u, err := models.FindUnembedding(w.File)
		if err != nil {
			return nil, nil, err
		}
		s := &alignSide{d: info.DModel}
		for l := range info.NLayer {
			t, err := layerTensors(info, w.File, l)
			if err != nil {
				return nil, nil, err
			}
			name := t.down
			if o.Kind == "up" {
				name = t.up
			}
			x, err := gram(w, name, o.Kind == "up")
			if err != nil {
				return nil, nil, err
			}
			if r, c := x.Dims(); r != info.DModel || c != info.DModel {
				return nil, nil, fmt.Errorf("%s: %s gives a %d × %d Gram matrix, want d_model %d", w.File.Path, name, r, c, info.DModel)
			}
			s.xs = append(s.xs, x)
		}
		return s, u, nil
	}
	sa, ua, err := side(wa)
	if err != nil {
		return nil, err
	}
	sb, ub, err := side(wb)
	if err != nil {
		return nil, err
	}
	if ua.NVocab != ub.NVocab {
		return nil, inputErr("the unembeddings have %d and %d rows: alignment needs one vocabulary", ua.NVocab, ub.NVocab)
	}
	// C = E_Aᵀ E_B and s = Eᵀ 1, one block of rows of each at a time
	n := ua.NVocab
	c := mat.NewDense(sa.d, sb.d, nil)
	sa.s, sb.s = mat.NewVecDense(sa.d, nil), mat.NewVecDense(sb.d, nil)
	blk := rowBlock(max(sa.d, sb.d))
	ra := make([]float32, blk*sa.d)
	rb := make([]float32, blk*sb.d)
	for r0 := 0; r0 < n; r0 += blk {
		m := min(blk, n-r0)
		if err := wa.ReadRows(ra[:m*sa.d], ua.Unembed, r0, m); err != nil {
			return nil, err
		}
		if err := wb.ReadRows(rb[:m*sb.d], ub.Unembed, r0, m); err != nil {
			return nil, err
		}
		a := mat.NewDense(m, sa.d, widen64(ra[:m*sa.d]))
		b := mat.NewDense(m, sb.d, widen64(rb[:m*sb.d]))
		var p mat.Dense
		p.Mul(a.T(), b)
		c.Add(c, &p)
		for i := range m {
			for j := range sa.d {
				sa.s.SetVec(j, sa.s.AtVec(j)+a.At(i, j))
			}
			for j := range sb.d {
				sb.s.SetVec(j, sb.s.AtVec(j)+b.At(i, j))
			}
		}
	}
	// Y_i = X_Ai C (d_A × d_B), Z_j = X_Bj Cᵀ (d_B × d_A):
	// ⟨M_Ai, M_Bj⟩ = tr(Y_i Z_j)
	ys := make([]*mat.Dense, len(sa.xs))
	for i, x := range sa.xs {
		ys[i] = new(mat.Dense)
		ys[i].Mul(x, c)
	}
	zs := make([]*mat.Dense, len(sb.xs))
	for j, x := range sb.xs {
		zs[j] = new(mat.Dense)
		zs[j].Mul(x, c.T())
	}
	// the same within each model, with C = E_Aᵀ E_A: ‖M‖²
	selfNorm := func(side *alignSide, w *models.Weights, u *models.Unembedding) ([]float64, error) {
		cc := mat.NewDense(side.d, side.d, nil)
		err := w.EachRows(u.Unembed, rowBlock(side.d), func(r0 int, blk []float32) error {
			a := mat.NewDense(len(blk)/side.d, side.d, widen64(blk))
			var p mat.Dense
			p.Mul(a.T(), a)
			cc.Add(cc, &p)
			return nil
		})
		out := make([]float64, len(side.xs))
		for i, x := range side.xs {
			var y mat.Dense
			y.Mul(x, cc)
			out[i] = traceProduct(&y, &y)
		}
		return out, err
	}
	nA, err := selfNorm(sa, wa, ua)
	if err != nil {
		return nil, err
	}
	nB, err := selfNorm(sb, wb, ub)
	if err != nil {
		return nil, err
	}
	nn := float64(n) * float64(n)
	r := &AlignResult{Kind: o.Kind, ModelA: wa.File.Path, ModelB: wb.File.Path}
	for i := range sa.xs {
		meanA := mat.Inner(sa.s, sa.xs[i], sa.s) / nn
		varA := nA[i]/nn - meanA*meanA
		row := make([]float64, len(sb.xs))
		best := 0
		for j := range sb.xs {
			meanB := mat.Inner(sb.s, sb.xs[j], sb.s) / nn
			varB := nB[j]/nn - meanB*meanB
			cov := traceProduct(ys[i], zs[j])/nn - meanA*meanB
			row[j] = cov / math.Sqrt(varA*varB)
			if row[j] > row[best] {
				best = j
			}
		}
		r.Corr = append(r.Corr, row)
		r.Match = append(r.Match, best)
	}
	return r, nil
}

// traceProduct is tr(Y Z) = Σ_ij Y_ij Z_ji.
func traceProduct(y, z *mat.Dense) float64 {
	r, c := y.Dims()
	var s float64
	for i := range r {
		for j := range c {
			s += y.At(i, j) * z.At(j, i)
		}
	}
	return s
}

func widen64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
