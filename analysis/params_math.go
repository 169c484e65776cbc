package analysis

import (
	"container/heap"
	"math"
	"runtime"
	"sort"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/lldiff/lldiff/models"
)

// This file holds the numerics of `lldiff params`: vectors projected
// through the unembedding a block of rows at a time, low-rank token-pair
// circuits factored through d_head, and the exact top-k of such a circuit
// without forming the n_vocab × n_vocab matrix.

// rowBlock is the number of rows of cols values decoded at a time: about
// 4 MiB of float32.
func rowBlock(cols int) int { return max(1, (1<<20)/max(cols, 1)) }

// dot64 is x·y accumulated in float64.
func dot64(x, y []float32) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i]) * float64(y[i])
		s1 += float64(x[i+1]) * float64(y[i+1])
		s2 += float64(x[i+2]) * float64(y[i+2])
		s3 += float64(x[i+3]) * float64(y[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i]) * float64(y[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// norm64 is ‖x‖ accumulated in float64.
func norm64(x []float32) float64 { return math.Sqrt(dot64(x, x)) }

// parallelFor calls f on consecutive ranges [lo, hi) covering [0, n),
// one range per CPU at most, and waits for them.
func parallelFor(n int, f func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), max(n, 1))
	var wg sync.WaitGroup
	for k := range w {
		lo, hi := n*k/w, n*(k+1)/w
		if lo == hi {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); f(lo, hi) }()
	}
	wg.Wait()
}

// residualView says how a residual-stream vector is read in a lens mode:
// LensRaw takes it as it is; LensGamma multiplies it by a norm weight γ
// after centring it when the norm is a LayerNorm (as lens.Gamma does).
type residualView struct {
	mode      models.LensMode
	gamma     []float32
	layerNorm bool
}

// apply returns the vector the view reads from v (a new slice).
func (rv residualView) apply(v []float32) []float32 {
	out := make([]float32, len(v))
	if rv.mode == models.LensRaw {
		copy(out, v)
		return out
	}
	mean := 0.0
	if rv.layerNorm {
		for _, x := range v {
			mean += float64(x)
		}
		mean /= float64(len(v))
	}
	for i, x := range v {
		out[i] = float32((float64(x) - mean) * float64(rv.gamma[i]))
	}
	return out
}

// projectRows returns, for each vector in vecs (each of the tensor's row
// length), its dot product with every row of the named tensor:
// out[k][r] = row_r · vecs[k], accumulated in float64 and rounded once.
// The tensor is read a block of rows at a time.
func projectRows(w *models.Weights, name string, vecs [][]float32) ([][]float32, error) {
	rows, cols, err := w.Shape(name)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(vecs))
	for k := range out {
		out[k] = make([]float32, rows)
	}
	err = w.EachRows(name, rowBlock(cols), func(r0 int, blk []float32) error {
		n := len(blk) / cols
		parallelFor(n, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				row := blk[r*cols : (r+1)*cols]
				for k, v := range vecs {
					out[k][r0+r] = float32(dot64(row, v))
				}
			}
		})
		return nil
	})
	return out, err
}

// factorRows returns the n_rows × len(mats) products of the named tensor's
// rows (each read through rv) with the rows of each small matrix mats[k]
// (dk rows of the tensor's row length): out[k][r*dk+i] = mats[k]_i ·
// rv(row_r), scaled by scale[k]. It is a low-rank factor of a token-pair
// circuit: n_vocab × d_head instead of n_vocab × n_vocab.
func factorRows(w *models.Weights, name string, rv residualView, mats [][]float32, scale []float64) ([][]float32, error) {
	rows, cols, err := w.Shape(name)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(mats))
	for k, m := range mats {
		out[k] = make([]float32, rows*(len(m)/cols))
	}
	err = w.EachRows(name, rowBlock(cols), func(r0 int, blk []float32) error {
		n := len(blk) / cols
		parallelFor(n, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				x := rv.apply(blk[r*cols : (r+1)*cols])
				for k, m := range mats {
					dk := len(m) / cols
					for i := range dk {
						out[k][(r0+r)*dk+i] = float32(dot64(m[i*cols:(i+1)*cols], x) * scale[k])
					}
				}
			}
		})
		return nil
	})
	return out, err
}

// TokenPair is one entry of a token-pair circuit: input (or query) token
// In, output (or key) token Out.
type TokenPair struct {
	In       int32   `json:"in"`
	InPiece  string  `json:"in_piece"`
	Out      int32   `json:"out"`
	OutPiece string  `json:"out_piece"`
	Value    float64 `json:"value"`
}

type pairScore struct {
	i, j int32
	v    float64
}

// pairHeap keeps the best k pairs with the worst at the root: smaller
// value first, then the larger (i, j) so that ties keep lower ids.
type pairHeap []pairScore

func pairBefore(a, b pairScore) bool { // a ranks before b
	if a.v != b.v {
		return a.v > b.v
	}
	if a.i != b.i {
		return a.i < b.i
	}
	return a.j < b.j
}
func (h pairHeap) Len() int           { return len(h) }
func (h pairHeap) Less(x, y int) bool { return pairBefore(h[y], h[x]) }
func (h pairHeap) Swap(x, y int)      { h[x], h[y] = h[y], h[x] }
func (h *pairHeap) Push(x any)        { *h = append(*h, x.(pairScore)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// offer adds p when it ranks before the worst of k kept pairs.
func (h *pairHeap) offer(p pairScore, k int) {
	if len(*h) < k {
		heap.Push(h, p)
	} else if pairBefore(p, (*h)[0]) {
		(*h)[0] = p
		heap.Fix(h, 0)
	}
}

// extremePairs returns the k largest values of a_i · b_j over all pairs
// (i, j), in descending order, and the k smallest, in ascending order
// (ties to the lower (i, j)); a and b are n×r row-major factors (r =
// len(a)/na). It never forms the na × nb matrix: inputs and outputs are
// sorted by decreasing norm, and for each block of inputs only the outputs
// whose Cauchy–Schwarz bound ‖a_i‖·‖b_j‖ can still reach the k-th value
// found so far, at either end, are multiplied (one float32 matrix product
// per block, serving both ends); the search stops when no input's bound
// can. The candidates are rescored in float64, with a margin of extra
// candidates for the float32 rounding of the block products, so that the
// result is exact (up to ties within float32 rounding). The work is
// na·nb·r in the worst case (factors of equal norms, as random weights
// have) and usually far less.
func extremePairs(a, b []float32, r, k int) (top, bottom []pairScore) {
	na, nb := len(a)/r, len(b)/r
	k = min(k, na*nb)
	if k <= 0 {
		return nil, nil
	}
	sorted := func(m []float32, n int) ([]float32, []float64, []int32) {
		ns := make([]float64, n)
		order := make([]int32, n)
		for i := range n {
			ns[i] = norm64(m[i*r : (i+1)*r])
			order[i] = int32(i)
		}
		sort.SliceStable(order, func(x, y int) bool { return ns[order[x]] > ns[order[y]] })
		out := make([]float32, n*r)
		sn := make([]float64, n)
		for x, i := range order {
			copy(out[x*r:(x+1)*r], m[int(i)*r:(int(i)+1)*r])
			sn[x] = ns[i]
		}
		return out, sn, order
	}
	as, nA, oA := sorted(a, na)
	bs, nB, oB := sorted(b, nb)
	// keep more candidates than asked: float32 block products may order
	// near-equal values differently from float64
	keep := k + 16
	// hi keeps the largest values, lo the largest negated values
	var hi, lo pairHeap
	thHi, thLo := math.Inf(-1), math.Inf(-1)
	// margin covers the float32 rounding of a product of r terms: about
	// r·2^-24 of ‖a_i‖‖b_j‖
	eps := float64(r) * 6e-8
	slack := eps * nA[0] * nB[0]
	const block = 64
	c := make([]float32, block*nb)
	for x0 := 0; x0 < na; x0 += block {
		x1 := min(na, x0+block)
		th := min(thHi, thLo)
		if nA[x0]*nB[0]*(1+eps) < th {
			break
		}
		// outputs whose bound with the block's largest input can reach th
		jmax := sort.Search(nb, func(j int) bool { return nA[x0]*nB[j]*(1+eps) < th })
		if jmax == 0 {
			continue
		}
		m := x1 - x0
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: m, Cols: r, Stride: r, Data: as[x0*r : x1*r]},
			blas32.General{Rows: jmax, Cols: r, Stride: r, Data: bs[:jmax*r]},
			0, blas32.General{Rows: m, Cols: jmax, Stride: jmax, Data: c[:m*jmax]})
		for x := range m {
			row := c[x*jmax : (x+1)*jmax]
			ni := nA[x0+x]
			for j, v := range row {
				bound := ni * nB[j]
				if bound*(1+eps) < min(thHi, thLo) {
					break
				}
				vf, margin := float64(v), eps*bound
				if vf+margin >= thHi {
					hi.offer(pairScore{oA[x0+x], oB[j], vf}, keep)
					if len(hi) == keep {
						// keep pairs have float32 values of at least
						// hi[0].v, so float64 values of at least that less
						// the largest rounding margin: a lower bound on the
						// final k-th value
						thHi = max(thHi, hi[0].v-slack)
					}
				}
				if -vf+margin >= thLo {
					lo.offer(pairScore{oA[x0+x], oB[j], -vf}, keep)
					if len(lo) == keep {
						thLo = max(thLo, lo[0].v-slack)
					}
				}
			}
		}
	}
	// rescore in float64 and keep the k best of each end
	final := func(h pairHeap, sign float64) []pairScore {
		var out pairHeap
		for _, p := range h {
			p.v = sign * dot64(a[int(p.i)*r:(int(p.i)+1)*r], b[int(p.j)*r:(int(p.j)+1)*r])
			out.offer(p, k)
		}
		res := make([]pairScore, len(out))
		for i := len(res) - 1; i >= 0; i-- {
			res[i] = heap.Pop(&out).(pairScore)
			res[i].v *= sign
		}
		return res
	}
	return final(hi, 1), final(lo, -1)
}

// rowTop returns the k largest and smallest values of a_i · b_j over j
// for one input i: a row of a circuit, n_vocab × r work.
func rowTop(ai, b []float32, r int) []float32 {
	out := make([]float32, len(b)/r)
	for j := range out {
		out[j] = float32(dot64(ai, b[j*r:(j+1)*r]))
	}
	return out
}

// silu is x·sigmoid(x); gelu is the tanh approximation llama.cpp's GELU
// computes (ggml's CPU backend rounds through half precision, so values
// agree to about 1e-3 relative).
func silu(x float64) float64 { return x / (1 + math.Exp(-x)) }

func gelu(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// normalize applies the norm of a layer's input as the model does:
// RMSNorm with weight γ, or LayerNorm with weight γ and bias β.
func normalize(x, gamma, beta []float32, eps float64, layerNorm bool) []float32 {
	mean := 0.0
	if layerNorm {
		for _, v := range x {
			mean += float64(v)
		}
		mean /= float64(len(x))
	}
	var ss float64
	for _, v := range x {
		ss += (float64(v) - mean) * (float64(v) - mean)
	}
	scale := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float32, len(x))
	for i, v := range x {
		y := (float64(v) - mean) * scale * float64(gamma[i])
		if beta != nil {
			y += float64(beta[i])
		}
		out[i] = float32(y)
	}
	return out
}
