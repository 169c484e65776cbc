package diff

import "math"

const lenMismatch = "diff: slice lengths do not match"

// sums holds the float64 sums from which every pairwise metric is derived.
// Adding the sums of several row pairs gives the metrics of the concatenated
// rows.
type sums struct {
	d2 float64 // Σ (a_i - b_i)²
	aa float64 // Σ a_i²
	bb float64 // Σ b_i²
	ab float64 // Σ a_i b_i
}

// add adds the sums of a and b to s. It panics if len(a) != len(b).
func (s *sums) add(a, b []float32) {
	if len(a) != len(b) {
		panic(lenMismatch)
	}
	for i, av := range a {
		x, y := float64(av), float64(b[i])
		d := x - y
		s.d2 += d * d
		s.aa += x * x
		s.bb += y * y
		s.ab += x * y
	}
}

func (s sums) l2() float64    { return math.Sqrt(s.d2) }
func (s sums) normA() float64 { return math.Sqrt(s.aa) }
func (s sums) normB() float64 { return math.Sqrt(s.bb) }
func (s sums) rel() float64   { return relDist(s.l2(), s.normA(), s.normB()) }
func (s sums) cosine() float64 {
	return cosine(s.ab, s.normA(), s.normB())
}

// relDist returns d / mean(na, nb), and 0 when both norms are 0.
func relDist(d, na, nb float64) float64 {
	m := (na + nb) / 2
	if m == 0 {
		// Both vectors are zero, so they are equal and d is 0 too.
		return 0
	}
	return d / m
}

// cosine returns ab / (na nb) with the zero-vector convention of Cosine,
// clamped to [-1, 1] against rounding. The denominator is one product, so
// the result is symmetric in a and b bit for bit (ab / na / nb is not).
func cosine(ab, na, nb float64) float64 {
	switch {
	case na == 0 && nb == 0:
		return 1
	case na == 0 || nb == 0:
		return 0
	}
	c := ab / (na * nb)
	switch {
	case c > 1:
		return 1
	case c < -1:
		return -1
	}
	return c // NaN stays NaN.
}

// Norm returns the Euclidean norm ‖a‖, accumulated in float64.
func Norm(a []float32) float64 {
	var s float64
	for _, v := range a {
		x := float64(v)
		s += x * x
	}
	return math.Sqrt(s)
}

// Dot returns a·b accumulated in float64. It panics if len(a) != len(b).
func Dot(a, b []float32) float64 {
	if len(a) != len(b) {
		panic(lenMismatch)
	}
	var s float64
	for i, v := range a {
		s += float64(v) * float64(b[i])
	}
	return s
}

// Dot64 returns a·b for a float32 a and a float64 b (a working vector such
// as a mean or a direction being iterated), accumulated in float64. It
// panics if len(a) != len(b).
func Dot64(a []float32, b []float64) float64 {
	if len(a) != len(b) {
		panic(lenMismatch)
	}
	var s float64
	for i, v := range a {
		s += float64(v) * b[i]
	}
	return s
}

// Norm64 returns the Euclidean norm of a float64 vector, summed without
// scaling (the vectors lldiff keeps in float64 are means and directions
// of float32 activations, far from overflow).
func Norm64(a []float64) float64 {
	var s float64
	for _, v := range a {
		s += v * v
	}
	return math.Sqrt(s)
}

// Unit returns a/‖a‖ as a new slice, each value divided in float64, or a
// copy of a when a is zero (a zero vector has no direction to keep).
func Unit(a []float32) []float32 {
	n := Norm(a)
	out := make([]float32, len(a))
	for i, v := range a {
		if n > 0 {
			out[i] = float32(float64(v) / n)
		} else {
			out[i] = v
		}
	}
	return out
}

// Dist returns the Euclidean distance ‖a−b‖, accumulated in float64.
// It panics if len(a) != len(b).
func Dist(a, b []float32) float64 {
	if len(a) != len(b) {
		panic(lenMismatch)
	}
	var s float64
	for i, v := range a {
		d := float64(v) - float64(b[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// RelDist returns the relative distance ‖a−b‖ / ((‖a‖+‖b‖)/2), the distance
// in units of the vectors' mean norm. By the triangle inequality it lies in
// [0, 2]: 0 for equal vectors, 2 for antiparallel vectors of equal norm or
// when one of the vectors is zero. When a and b are both zero the ratio is
// 0/0; RelDist returns 0, since the vectors are equal.
// It panics if len(a) != len(b).
func RelDist(a, b []float32) float64 {
	var s sums
	s.add(a, b)
	return s.rel()
}

// Cosine returns the cosine similarity a·b / (‖a‖ ‖b‖), in [-1, 1].
// A zero vector has no direction, so the ratio is undefined; Cosine returns 1
// when both vectors are zero (they are equal, consistent with RelDist 0) and
// 0 when exactly one is zero (no shared direction). It panics if
// len(a) != len(b).
func Cosine(a, b []float32) float64 {
	var s sums
	s.add(a, b)
	return s.cosine()
}

// SubTo computes dst = a − b element-wise and returns dst. If dst is nil a new
// slice of len(a) is allocated. It panics if len(a) != len(b), or if dst is not
// nil and len(dst) != len(a). dst may alias a or b.
func SubTo(dst, a, b []float32) []float32 {
	if len(a) != len(b) {
		panic(lenMismatch)
	}
	if dst == nil {
		dst = make([]float32, len(a))
	} else if len(dst) != len(a) {
		panic(lenMismatch)
	}
	for i, v := range a {
		dst[i] = v - b[i]
	}
	return dst
}
