package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// The numerics of map: vector helpers, average-linkage clustering, PCA to
// two dimensions, k-means and the silhouette. All in float64; n (the
// prompts) is small, d (the width) may be large.

func vdot(x, y []float64) float64 {
	var s float64
	for i := range x {
		s += x[i] * y[i]
	}
	return s
}

func vnorm(x []float64) float64 { return math.Sqrt(vdot(x, x)) }

// vcos is the cosine of x and y, 0 when either is zero.
func vcos(x, y []float64) float64 {
	nx, ny := vnorm(x), vnorm(y)
	if nx == 0 || ny == 0 {
		return 0
	}
	return vdot(x, y) / (nx * ny)
}

func vdist(x, y []float64) float64 {
	var s float64
	for i := range x {
		s += (x[i] - y[i]) * (x[i] - y[i])
	}
	return math.Sqrt(s)
}

// averageLinkage clusters n items with distance matrix dist by average
// linkage (UPGMA) and returns the leaf order of the tree (each merge puts
// the cluster made first on the left) and the merges in order. Ties go to
// the pair with the lower ids. O(n³): meant for up to a few thousand
// items.
func averageLinkage(dist [][]float64) ([]int, []Merge) {
	n := len(dist)
	if n == 0 {
		return nil, nil
	}
	type cluster struct {
		id      int
		members []int
	}
	var live []cluster
	for i := range n {
		live = append(live, cluster{i, []int{i}})
	}
	children := map[int][2]int{}
	var merges []Merge
	avg := func(a, b cluster) float64 {
		var s float64
		for _, i := range a.members {
			for _, j := range b.members {
				s += dist[i][j]
			}
		}
		return s / float64(len(a.members)*len(b.members))
	}
	for len(live) > 1 {
		bi, bj, bd := 0, 1, math.Inf(1)
		for i := range live {
			for j := i + 1; j < len(live); j++ {
				if d := avg(live[i], live[j]); d < bd {
					bi, bj, bd = i, j, d
				}
			}
		}
		a, b := live[bi], live[bj]
		id := n + len(merges)
		merges = append(merges, Merge{A: a.id, B: b.id, Dist: bd})
		children[id] = [2]int{a.id, b.id}
		live[bi] = cluster{id, slices.Concat(a.members, b.members)}
		live = slices.Delete(live, bj, bj+1)
	}
	var order []int
	var walk func(id int)
	walk = func(id int) {
		if id < n {
			order = append(order, id)
			return
		}
		c := children[id]
		walk(c[0])
		walk(c[1])
	}
	walk(live[0].id)
	return order, merges
}

// pca2 returns the coordinates of the rows of xs on the first two
// principal axes of the centred rows, and the fraction of the total
// variance on each. It works on the n × n Gram matrix of the centred rows
// (n prompts, d ≫ n dimensions): its eigenvectors scaled by the square
// roots of the eigenvalues are the coordinates. Each axis's sign makes its
// largest coordinate (in absolute value) positive.
func pca2(xs [][]float64) ([][2]float64, [2]float64, error) {
	n := len(xs)
	coords := make([][2]float64, n)
	var explained [2]float64
	if n < 2 {
		return coords, explained, nil
	}
	d := len(xs[0])
	mean := make([]float64, d)
	for _, x := range xs {
		for c, v := range x {
			mean[c] += v / float64(n)
		}
	}
	cx := make([][]float64, n)
	for i, x := range xs {
		cx[i] = make([]float64, d)
		for c, v := range x {
			cx[i][c] = v - mean[c]
		}
	}
	g := mat.NewSymDense(n, nil)
	for i := range n {
		for j := i; j < n; j++ {
			g.SetSym(i, j, vdot(cx[i], cx[j]))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(g, true) {
		return nil, explained, errorString("PCA: the eigen-decomposition did not converge")
	}
	vals := es.Values(nil)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	order := make([]int, n)
	total := 0.0
	for i := range order {
		order[i] = i
		total += max(vals[i], 0)
	}
	sort.SliceStable(order, func(a, b int) bool { return vals[order[a]] > vals[order[b]] })
	for axis := range min(2, n) {
		k := order[axis]
		l := max(vals[k], 0)
		if total > 0 {
			explained[axis] = l / total
		}
		s := math.Sqrt(l)
		big := 0.0
		for i := range n {
			if v := vecs.At(i, k); math.Abs(v) > math.Abs(big) {
				big = v
			}
		}
		sign := 1.0
		if big < 0 {
			sign = -1
		}
		for i := range n {
			coords[i][axis] = sign * s * vecs.At(i, k)
		}
	}
	return coords, explained, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// kmeans clusters the rows of xs into k clusters by Lloyd's algorithm from
// k-means++ starts (10 of them, a fixed seed: the same input gives the
// same clusters) and returns the assignment with the least within-cluster
// sum of squares, clusters numbered in order of their first member.
func kmeans(xs [][]float64, k int, seed uint64) []int {
	n := len(xs)
	rng := rand.New(rand.NewPCG(seed, 0x6d6170))
	var best []int
	bestSS := math.Inf(1)
	for range 10 {
		// k-means++: each next centre drawn with probability ∝ squared
		// distance to the nearest centre so far
		centres := [][]float64{slices.Clone(xs[rng.IntN(n)])}
		d2 := make([]float64, n)
		for len(centres) < k {
			var sum float64
			for i, x := range xs {
				d2[i] = math.Inf(1)
				for _, c := range centres {
					d2[i] = min(d2[i], sq(x, c))
				}
				sum += d2[i]
			}
			pick := 0
			if sum > 0 {
				t := rng.Float64() * sum
				for i, v := range d2 {
					t -= v
					if t <= 0 {
						pick = i
						break
					}
				}
			} else {
				pick = rng.IntN(n)
			}
			centres = append(centres, slices.Clone(xs[pick]))
		}
		assign := make([]int, n)
		for iter := 0; iter < 100; iter++ {
			changed := false
			for i, x := range xs {
				bc, bd := 0, math.Inf(1)
				for c, ctr := range centres {
					if dd := sq(x, ctr); dd < bd {
						bc, bd = c, dd
					}
				}
				if assign[i] != bc || iter == 0 {
					changed = changed || assign[i] != bc
					assign[i] = bc
				}
			}
			if !changed && iter > 0 {
				break
			}
			for c := range centres {
				cnt := 0
				for j := range centres[c] {
					centres[c][j] = 0
				}
				for i, x := range xs {
					if assign[i] == c {
						cnt++
						for j, v := range x {
							centres[c][j] += v
						}
					}
				}
				if cnt == 0 { // an empty cluster takes the farthest point
					far, fd := 0, -1.0
					for i, x := range xs {
						if dd := sq(x, centres[assign[i]]); dd > fd {
							far, fd = i, dd
						}
					}
					copy(centres[c], xs[far])
					continue
				}
				for j := range centres[c] {
					centres[c][j] /= float64(cnt)
				}
			}
		}
		var ss float64
		for i, x := range xs {
			ss += sq(x, centres[assign[i]])
		}
		if ss < bestSS-1e-12 {
			bestSS, best = ss, assign
		}
	}
	// renumber in order of first member
	ren := map[int]int{}
	out := make([]int, n)
	for i, c := range best {
		if _, ok := ren[c]; !ok {
			ren[c] = len(ren)
		}
		out[i] = ren[c]
	}
	return out
}

func sq(x, y []float64) float64 {
	var s float64
	for i := range x {
		s += (x[i] - y[i]) * (x[i] - y[i])
	}
	return s
}

// silhouette is the mean silhouette of an assignment into k clusters,
// with Euclidean distances: for each item, (b − a)/max(a, b) with a its
// mean distance to the rest of its cluster and b the least mean distance
// to another cluster; 0 for an item alone in its cluster.
func silhouette(xs [][]float64, assign []int, k int) float64 {
	n := len(xs)
	var total float64
	for i := range n {
		sums := make([]float64, k)
		counts := make([]int, k)
		for j := range n {
			if j != i {
				sums[assign[j]] += vdist(xs[i], xs[j])
				counts[assign[j]]++
			}
		}
		own := assign[i]
		if counts[own] == 0 {
			continue
		}
		a := sums[own] / float64(counts[own])
		b := math.Inf(1)
		for c := range k {
			if c != own && counts[c] > 0 {
				b = min(b, sums[c]/float64(counts[c]))
			}
		}
		if math.IsInf(b, 1) || max(a, b) == 0 {
			continue
		}
		total += (b - a) / max(a, b)
	}
	return total / float64(n)
}
