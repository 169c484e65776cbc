package contrast

import (
	"math"

	"github.com/lldiff/lldiff/diff"
	"gonum.org/v1/gonum/mat"
)

// PC is a first principal component.
type PC struct {
	// Vec is the unit direction.
	Vec []float32
	// Explained is the fraction of the total second moment (the variance,
	// when centered) along Vec: λ₁ / Σλ.
	Explained float64
	// Iterations is 0 when Vec comes from a full eigendecomposition, else
	// the number of power iterations used.
	Iterations int
}

// exactPCAMax is the largest min(rows, width) for which PC1 uses a full
// eigendecomposition (gonum's EigenSym) of the rows×rows Gram matrix or the
// width×width second-moment matrix; above it, power iteration on the rows.
// A variable so that tests can force either path.
var exactPCAMax = 256

// Power iteration stops when 1 − |cos| between successive iterates falls
// below powerTol (an angle of about 1.4e-6 rad) or after powerMaxIter.
const (
	powerTol     = 1e-12
	powerMaxIter = 5000
)

// PC1 returns the first principal component of the rows of x. With center
// the rows are centered at their mean first (the usual PCA); without, it is
// the top right singular vector of x. start, when not nil and not zero, is
// where power iteration starts (the mean difference is a good guess).
// The sign of Vec is fixed so that its largest-magnitude element is
// positive; callers orient it further (Compute makes A project higher).
// It panics if x has no rows, or start has the wrong length.
func PC1(x *Samples, center bool, start []float64) PC {
	if x.N == 0 || x.D == 0 {
		panic("contrast: PC1 of an empty matrix")
	}
	if start != nil && len(start) != x.D {
		panic("contrast: PC1: start has the wrong length")
	}
	y := x
	if center {
		mu := x.mean()
		y = &Samples{N: x.N, D: x.D, Data: make([]float32, len(x.Data))}
		for i := range x.N {
			src, dst := x.Row(i), y.Row(i)
			for j, v := range src {
				dst[j] = float32(float64(v) - mu[j])
			}
		}
	}
	var trace float64
	for i := range y.N {
		r := y.Row(i)
		trace += diff.Dot(r, r)
	}
	var pc PC
	if min(y.N, y.D) <= exactPCAMax {
		pc = exactPC1(y)
	} else {
		pc = powerPC1(y, start)
	}
	if trace > 0 {
		pc.Explained = min(1, pc.Explained/trace)
	} else {
		pc.Explained = 0
	}
	orient(pc.Vec)
	return pc
}

// exactPC1 returns the top eigenvector of yᵀy with its eigenvalue in
// Explained (not yet divided by the trace).
func exactPC1(y *Samples) PC {
	n, d := y.N, y.D
	var vec []float64
	var lambda float64
	if n <= d {
		// Gram matrix G = y yᵀ (n×n): its top eigenvector v gives the
		// component yᵀv / ‖yᵀv‖ with the same eigenvalue.
		g := mat.NewSymDense(n, nil)
		for i := range n {
			for j := i; j < n; j++ {
				g.SetSym(i, j, diff.Dot(y.Row(i), y.Row(j)))
			}
		}
		v, l := topEigen(g)
		lambda = l
		vec = make([]float64, d)
		for i := range n {
			w := v[i]
			for j, x := range y.Row(i) {
				vec[j] += w * float64(x)
			}
		}
	} else {
		// second-moment matrix C = yᵀy (d×d)
		c := make([]float64, d*d)
		for i := range n {
			r := y.Row(i)
			for p, xp := range r {
				if xp == 0 {
					continue
				}
				fp := float64(xp)
				row := c[p*d : (p+1)*d]
				for q := p; q < d; q++ {
					row[q] += fp * float64(r[q])
				}
			}
		}
		for p := range d {
			for q := 0; q < p; q++ {
				c[p*d+q] = c[q*d+p]
			}
		}
		vec, lambda = topEigen(mat.NewSymDense(d, c))
	}
	return PC{Vec: unit32(vec), Explained: max(lambda, 0)}
}

// topEigen returns the eigenvector of the largest eigenvalue of a and the
// eigenvalue.
func topEigen(a *mat.SymDense) ([]float64, float64) {
	var es mat.EigenSym
	if !es.Factorize(a, true) {
		// EigenSym fails only on NaN/Inf input.
		n, _ := a.Dims()
		return make([]float64, n), math.NaN()
	}
	vals := es.Values(nil)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	k := len(vals) - 1 // ascending order
	return mat.Col(nil, k, &vecs), vals[k]
}

// powerPC1 finds the top eigenvector of yᵀy by power iteration on the rows,
// never forming yᵀy: each step is v ← Σ (yᵢ·v) yᵢ.
func powerPC1(y *Samples, start []float64) PC {
	d := y.D
	v := make([]float64, d)
	if start != nil && diff.Norm64(start) > 0 {
		copy(v, start)
	} else {
		// the longest row
		best, bn := 0, -1.0
		for i := range y.N {
			if n := diff.Dot(y.Row(i), y.Row(i)); n > bn {
				best, bn = i, n
			}
		}
		for j, x := range y.Row(best) {
			v[j] = float64(x)
		}
	}
	if nv := diff.Norm64(v); nv > 0 {
		for j := range v {
			v[j] /= nv
		}
	} else {
		return PC{Vec: make([]float32, d)}
	}
	w := make([]float64, d)
	var lambda float64
	it := 0
	for it < powerMaxIter {
		it++
		clear(w)
		for i := range y.N {
			r := y.Row(i)
			p := diff.Dot64(r, v)
			for j, x := range r {
				w[j] += p * float64(x)
			}
		}
		lambda = 0
		for j := range w {
			lambda += v[j] * w[j]
		}
		nw := diff.Norm64(w)
		if nw == 0 {
			break
		}
		var c float64
		for j := range w {
			w[j] /= nw
			c += w[j] * v[j]
		}
		v, w = w, v
		if 1-math.Abs(c) < powerTol {
			break
		}
	}
	return PC{Vec: unit32(v), Explained: max(lambda, 0), Iterations: it}
}

func unit32(v []float64) []float32 {
	n := diff.Norm64(v)
	out := make([]float32, len(v))
	if n == 0 {
		return out
	}
	for i, x := range v {
		out[i] = float32(x / n)
	}
	return out
}

// orient flips v so that its largest-magnitude element is positive.
func orient(v []float32) {
	best := 0
	for i, x := range v {
		if math.Abs(float64(x)) > math.Abs(float64(v[best])) {
			best = i
		}
	}
	if len(v) > 0 && v[best] < 0 {
		for i := range v {
			v[i] = -v[i]
		}
	}
}
