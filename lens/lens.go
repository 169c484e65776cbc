// Package lens is the logit lens: it reads residual-stream vectors as the
// model's final layers would, by applying the final norm (RMSNorm for
// llama, qwen2, qwen3, phi3 and gemma2, LayerNorm with a bias for gpt2 and
// gptneox), the unembedding matrix and, where the model has one (gemma2),
// its final logit soft-capping, and ranks the resulting logits.
//
// The fast unembedding runs in ggml (llamacpp.Unembedder); this package is
// pure Go and holds what does not need ggml: the modes, top-k, softmax and
// ranks of logit rows, and Reference, a plain Go unembedding with float64
// accumulation used to check the ggml one and for tiny models.
package lens

import (
	"container/heap"
	"math"

	"github.com/lldiff/lldiff/models"
)

// Mode says how much of the final norm is applied before the unembedding;
// models owns the type (models.LensMode), since the lens computed by ggml
// (llamacpp.Unembedder) takes it too. Norm is the model's own computation;
// Gamma and Raw are linear in x, so the lens of a difference A−B is the
// difference of the lenses in those modes.
type Mode = models.LensMode

// The modes (see models.LensNorm, models.LensGamma and models.LensRaw).
const (
	Norm  = models.LensNorm
	Gamma = models.LensGamma
	Raw   = models.LensRaw
)

// ParseMode parses "norm", "gamma" or "raw" (case-insensitive).
func ParseMode(s string) (Mode, error) { return models.ParseLensMode(s) }

// Token is a vocabulary entry and a value: a logit, a probability or a
// difference of either.
type Token struct {
	ID    int32
	Value float64
}

// above reports whether a ranks before b in descending order: larger value
// first, lower id first on ties, NaN after every number.
func above(a, b Token) bool {
	an, bn := math.IsNaN(a.Value), math.IsNaN(b.Value)
	switch {
	case an != bn:
		return bn
	case !an && a.Value != b.Value:
		return a.Value > b.Value
	}
	return a.ID < b.ID
}

// below is above for ascending order: smaller value first, lower id first
// on ties, NaN after every number.
func below(a, b Token) bool {
	an, bn := math.IsNaN(a.Value), math.IsNaN(b.Value)
	switch {
	case an != bn:
		return bn
	case !an && a.Value != b.Value:
		return a.Value < b.Value
	}
	return a.ID < b.ID
}

// selection is a heap holding the best k tokens seen so far with the worst
// of them at the root.
type selection struct {
	t      []Token
	before func(a, b Token) bool
}

func (s *selection) Len() int           { return len(s.t) }
func (s *selection) Less(i, j int) bool { return s.before(s.t[j], s.t[i]) }
func (s *selection) Swap(i, j int)      { s.t[i], s.t[j] = s.t[j], s.t[i] }
func (s *selection) Push(x any)         { s.t = append(s.t, x.(Token)) }
func (s *selection) Pop() any {
	x := s.t[len(s.t)-1]
	s.t = s.t[:len(s.t)-1]
	return x
}

// pick returns the k tokens that come first in the order before, in that
// order, in O(n log k).
func pick(logits []float32, k int, before func(a, b Token) bool) []Token {
	k = min(k, len(logits))
	if k <= 0 {
		return nil
	}
	s := &selection{t: make([]Token, 0, k), before: before}
	for i, v := range logits {
		t := Token{ID: int32(i), Value: float64(v)}
		if len(s.t) < k {
			heap.Push(s, t)
		} else if before(t, s.t[0]) {
			s.t[0] = t
			heap.Fix(s, 0)
		}
	}
	out := make([]Token, len(s.t))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(s).(Token)
	}
	return out
}

// TopK returns the k largest logits in descending order, ties broken by
// lower id first and NaNs last. It returns all of them when k exceeds
// len(logits) and nil when k <= 0.
func TopK(logits []float32, k int) []Token { return pick(logits, k, above) }

// BottomK returns the k smallest logits in ascending order, ties broken by
// lower id first and NaNs last; k as in TopK.
func BottomK(logits []float32, k int) []Token { return pick(logits, k, below) }

// Rank returns the position of id in the descending order of TopK: 0 for
// the largest logit. It panics if id is out of range.
func Rank(logits []float32, id int32) int {
	t := Token{ID: id, Value: float64(logits[id])}
	r := 0
	for i, v := range logits {
		if above(Token{ID: int32(i), Value: float64(v)}, t) {
			r++
		}
	}
	return r
}

// logSumExp returns the maximum of logits and log Σ exp(l − max), summed in
// float64.
func logSumExp(logits []float32) (mx, lse float64) {
	mx = math.Inf(-1)
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v) - mx)
	}
	return mx, math.Log(s)
}

// Softmax writes the probabilities of logits to dst, reusing dst when its
// capacity suffices, and returns it. The maximum is subtracted before
// exponentiating and the sum is accumulated in float64. A row whose
// maximum is +Inf or NaN gives NaNs.
func Softmax(dst, logits []float32) []float32 {
	if cap(dst) < len(logits) {
		dst = make([]float32, len(logits))
	}
	dst = dst[:len(logits)]
	if len(logits) == 0 {
		return dst
	}
	mx, lse := logSumExp(logits)
	for i, v := range logits {
		dst[i] = float32(math.Exp(float64(v) - mx - lse))
	}
	return dst
}

// LogSoftmaxAt returns log softmax(logits)[id], computed in float64 without
// forming the whole distribution. It panics if id is out of range.
func LogSoftmaxAt(logits []float32, id int32) float64 {
	v := float64(logits[id])
	mx, lse := logSumExp(logits)
	return v - mx - lse
}
