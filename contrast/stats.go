package contrast

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/lldiff/lldiff/diff"
)

// Stats are the contrast statistics of one component over sets A and B.
// Statistics that are undefined for the data (a spread from one row per
// set, sign consistency of unpaired sets) are NaN.
type Stats struct {
	NA, NB int
	Paired bool

	// MeanDiff is Δμ = mean(A) − mean(B); for pairs it is also the mean of
	// the pair differences. Norm is ‖Δμ‖.
	MeanDiff []float32
	Norm     float64

	// ProjA and ProjB are the projections x·u of every row on the unit
	// mean difference u = Δμ/‖Δμ‖ (all 0 when Δμ is 0). MeanA and MeanB
	// are their means, so that MeanA − MeanB = Norm; StdA and StdB their
	// sample standard deviations (n−1 in the denominator).
	ProjA, ProjB []float64
	MeanA, MeanB float64
	StdA, StdB   float64

	// Spread is the pooled standard deviation of the projections,
	// sqrt(((nA−1)·StdA² + (nB−1)·StdB²) / (nA+nB−2)).
	Spread float64
	// Scale is the root mean square of the row norms of A and B pooled:
	// the size of the activations, against which a difference or a spread
	// is float32 rounding (Negligible). StdA, StdB and Spread at that
	// level are 0.
	Scale float64
	// Separation is Cohen's d of the projections, (MeanA − MeanB)/Spread =
	// Norm/Spread: how many spreads apart the two sets lie along Δμ. It is
	// +Inf when the sets differ but do not spread, 0 when they do not
	// differ (Norm negligible against Scale): never the ratio of two
	// rounding errors.
	Separation float64
	// SignConsistency (pairs only) is the fraction of pairs whose
	// difference a_i − b_i has a positive dot product with Δμ.
	SignConsistency float64
	// HeldOut is the leave-one-out accuracy of the mean-difference
	// classifier: each row (for pairs, each pair; with Samples.Groups, each
	// group) is left out, Δμ and the midpoint of the set means are
	// recomputed from the rest, and a row counts as right when it falls on
	// its own set's side of the midpoint along the new Δμ (ties count
	// half). Unlike Separation it is not inflated by fitting the direction
	// to the rows it scores.
	HeldOut float64

	// PC is the first principal component, sign fixed so that A projects
	// higher than B (PC·Δμ ≥ 0). For pairs it is computed from the pair
	// differences, uncentered (the direction of largest mean squared
	// projection of a_i − b_i, as llama.cpp's cvector-generator computes);
	// for unpaired sets from A and B pooled and centered at their common
	// mean.
	PC PC
	// PCCos is the cosine between PC.Vec and Δμ.
	PCCos float64
}

// RoundingLevel is the relative size below which a difference or a spread
// of activations is float32 rounding, not a measurement: two sequences
// decoded in one batch, identical in theory, differ by about 1e-6 of their
// norm (the order of additions depends on where they sit in the batch).
const RoundingLevel = 1e-5

// Negligible reports whether x (a norm or a spread) is at the level of
// rounding for activations of RMS norm scale, or zero.
func Negligible(x, scale float64) bool {
	return x == 0 || x <= RoundingLevel*scale
}

// rmsNorm returns the root mean square of the row norms of a and b
// pooled.
func rmsNorm(a, b *Samples) float64 {
	var ss float64
	for _, s := range []*Samples{a, b} {
		for _, v := range s.Data {
			ss += float64(v) * float64(v)
		}
	}
	if n := a.N + b.N; n > 0 {
		return math.Sqrt(ss / float64(n))
	}
	return 0
}

// Compute returns the contrast statistics of a against b. With paired, row
// i of a pairs with row i of b. It fails when a set is empty, the widths
// differ, or paired sets have different row counts.
func Compute(a, b *Samples, paired bool) (*Stats, error) {
	switch {
	case a.N == 0 || b.N == 0:
		return nil, fmt.Errorf("contrast: set A has %d rows and set B %d: both need at least one", a.N, b.N)
	case a.D != b.D:
		return nil, fmt.Errorf("contrast: set A is %d wide and set B %d wide", a.D, b.D)
	case a.D == 0:
		return nil, errors.New("contrast: rows of width 0")
	case paired && a.N != b.N:
		return nil, fmt.Errorf("contrast: paired sets need equal row counts, have A %d and B %d", a.N, b.N)
	case paired && !slices.Equal(a.Groups, b.Groups):
		return nil, errors.New("contrast: paired sets need the same groups, row by row")
	}
	s := &Stats{NA: a.N, NB: b.N, Paired: paired, SignConsistency: math.NaN()}
	muA, muB := a.mean(), b.mean()
	delta := make([]float64, a.D)
	for j := range delta {
		delta[j] = muA[j] - muB[j]
	}
	s.MeanDiff = to32(delta)
	s.Norm = diff.Norm64(delta)
	u := make([]float64, a.D)
	if s.Norm > 0 {
		for j, v := range delta {
			u[j] = v / s.Norm
		}
	}
	s.ProjA, s.MeanA, s.StdA = project(a, u)
	s.ProjB, s.MeanB, s.StdB = project(b, u)
	s.Spread = math.NaN()
	if dof := a.N + b.N - 2; dof > 0 {
		va, vb := 0.0, 0.0
		if a.N > 1 {
			va = s.StdA * s.StdA
		}
		if b.N > 1 {
			vb = s.StdB * s.StdB
		}
		s.Spread = math.Sqrt((float64(a.N-1)*va + float64(b.N-1)*vb) / float64(dof))
	}
	// a spread or a difference at the level of rounding is none, the same
	// way for every component: the separation is then 0 or +Inf, not 1e16
	// for one hook and +Inf for the next
	s.Scale = rmsNorm(a, b)
	for _, x := range []*float64{&s.StdA, &s.StdB, &s.Spread} {
		if !math.IsNaN(*x) && Negligible(*x, s.Scale) {
			*x = 0
		}
	}
	switch {
	case Negligible(s.Norm, s.Scale):
		s.Separation = 0
	case s.Spread == 0:
		s.Separation = math.Inf(1)
	default:
		// MeanA − MeanB equals Norm up to rounding; Norm is exact.
		s.Separation = s.Norm / s.Spread
	}
	if paired {
		same := 0
		for i := range a.N {
			// (a_i − b_i)·Δμ = a_i·Δμ − b_i·Δμ
			if s.ProjA[i]-s.ProjB[i] > 0 {
				same++
			}
		}
		s.SignConsistency = float64(same) / float64(a.N)
	}
	s.HeldOut = heldOut(a, b, muA, muB, paired)

	var pcStart []float64
	if s.Norm > 0 {
		pcStart = u
	}
	if paired {
		d := NewSamples(a.D, a.N)
		row := make([]float32, a.D)
		for i := range a.N {
			ra, rb := a.Row(i), b.Row(i)
			for j := range row {
				row[j] = float32(float64(ra[j]) - float64(rb[j]))
			}
			d.Append(row)
		}
		s.PC = PC1(d, false, pcStart)
	} else {
		pooled := &Samples{N: a.N + b.N, D: a.D, Data: append(append(make([]float32, 0, len(a.Data)+len(b.Data)), a.Data...), b.Data...)}
		s.PC = PC1(pooled, true, pcStart)
	}
	if c := diff.Dot64(s.PC.Vec, delta); c < 0 {
		for j := range s.PC.Vec {
			s.PC.Vec[j] = -s.PC.Vec[j]
		}
	}
	s.PCCos = 0
	if s.Norm > 0 {
		s.PCCos = max(-1, min(1, diff.Dot64(s.PC.Vec, u)))
	}
	return s, nil
}

// project returns the projections of the rows of x on u, their mean and
// sample standard deviation (NaN for one row).
func project(x *Samples, u []float64) (p []float64, mean, std float64) {
	p = make([]float64, x.N)
	for i := range x.N {
		p[i] = diff.Dot64(x.Row(i), u)
		mean += p[i]
	}
	mean /= float64(x.N)
	if x.N < 2 {
		return p, mean, math.NaN()
	}
	var ss float64
	for _, v := range p {
		ss += (v - mean) * (v - mean)
	}
	return p, mean, math.Sqrt(ss / float64(x.N-1))
}

// heldOut returns the leave-one-out accuracy of the nearest-mean classifier
// along the mean difference (see Stats.HeldOut), leaving out one group of
// rows at a time (for pairs, a pair's group in both sets), or NaN when
// leaving one out would empty a set.
func heldOut(a, b *Samples, muA, muB []float64, paired bool) float64 {
	ga, gb := a.groups(), b.groups()
	if paired && (len(ga) < 2 || len(ga) != len(gb)) || !paired && (len(ga) < 2 || len(gb) < 2) {
		return math.NaN()
	}
	d := a.D
	mA, mB := make([]float64, d), make([]float64, d)
	var right float64
	score := func(x []float32, sign float64) {
		// the left-out row's side of the midpoint along the new Δμ
		var s float64
		for j := range d {
			delta := mA[j] - mB[j]
			s += (float64(x[j]) - (mA[j]+mB[j])/2) * delta
		}
		switch {
		case s*sign > 0:
			right++
		case s == 0:
			right += 0.5
		}
	}
	// loo sets dst to the mean of x without the rows in out
	loo := func(dst, mu []float64, x *Samples, out []int) {
		k := float64(x.N)
		for j := range dst {
			dst[j] = k * mu[j]
		}
		for _, i := range out {
			for j, v := range x.Row(i) {
				dst[j] -= float64(v)
			}
		}
		r := k - float64(len(out))
		for j := range dst {
			dst[j] /= r
		}
	}
	if paired {
		for g := range ga {
			loo(mA, muA, a, ga[g])
			loo(mB, muB, b, gb[g])
			for _, i := range ga[g] {
				score(a.Row(i), 1)
			}
			for _, i := range gb[g] {
				score(b.Row(i), -1)
			}
		}
		return right / float64(a.N+b.N)
	}
	copy(mB, muB)
	for _, g := range ga {
		loo(mA, muA, a, g)
		for _, i := range g {
			score(a.Row(i), 1)
		}
	}
	copy(mA, muA)
	for _, g := range gb {
		loo(mB, muB, b, g)
		for _, i := range g {
			score(b.Row(i), -1)
		}
	}
	return right / float64(a.N+b.N)
}
