package analysis

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// SteerOptions configure Steer.
type SteerOptions struct {
	// Model names the model in the result (the path as the user gave it).
	Model  string
	Prompt string
	// Tokenize configures the prompt's and the answers' tokenization.
	Tokenize models.TokenizeOptions
	// Vector is the control vector, read from VectorFile (which names it
	// in the result and in messages).
	Vector     *contrast.ControlVector
	VectorFile string
	// Scales are the scales compared with scale 0 (no vector), in order.
	Scales []float64
	// Layers are the layers whose directions are applied (the zero value:
	// every layer), as llama.cpp's --control-vector-layer-range.
	Layers diff.Layers
	// N is the most tokens generated (greedy) at each scale, TopK the
	// tokens listed per distribution (at least 1).
	N, TopK int
	// Answers are continuations scored at every scale.
	Answers []string
	// IgnoreEOS keeps generating after an end-of-generation token.
	IgnoreEOS bool
	// Progress hears one step per scale, the baseline first.
	Progress Progress
}

// SteerResult is the document `steer --json` prints (docs/contrast.md).
type SteerResult struct {
	Model    string      `json:"model"`
	Cvec     SteerVector `json:"control_vector"`
	Prompt   string      `json:"prompt"`
	Tokens   []Token     `json:"tokens"`
	N        int         `json:"n_predict"`
	Warnings []string    `json:"warnings"`
	// Baseline is scale 0: no vector.
	Baseline SteerStep   `json:"baseline"`
	Scales   []SteerStep `json:"scales"`
}

// SteerVector describes the control vector as applied.
type SteerVector struct {
	File      string `json:"file"`
	ModelHint string `json:"model_hint"`
	// Layers are the layers whose direction is applied.
	Layers []int `json:"layers"`
	// Offset is the file's lldiff.layer_offset (-1 when it does not say).
	Offset int `json:"layer_offset"`
	// Meta holds the file's lldiff.* strings as written (method, a, b,
	// ...): text from a file, to be escaped before it reaches a terminal.
	Meta map[string]string `json:"meta,omitempty"`
}

// SteerStep is generation and the next-token distribution at one scale.
type SteerStep struct {
	Scale  float64 `json:"scale"`
	Text   string  `json:"text"`
	Tokens []Token `json:"generated"`
	// KL is KL(steered ‖ scale 0) of the next-token distributions after
	// the prompt, in nats.
	KL      float64       `json:"kl"`
	Top     []PredToken   `json:"top"`
	Gains   []ShiftToken  `json:"gains"`
	Losses  []ShiftToken  `json:"losses"`
	Answers []SteerAnswer `json:"answers,omitempty"`
}

// ShiftToken is a token whose probability after the prompt moved.
type ShiftToken struct {
	ID    int32   `json:"id"`
	Piece string  `json:"piece"`
	Base  float64 `json:"base_prob"`
	Prob  float64 `json:"prob"`
	Delta float64 `json:"delta"`
}

// SteerAnswer is an answer's score at one scale.
type SteerAnswer struct {
	Text    string  `json:"text"`
	LogProb float64 `json:"logprob"`
	Prob    float64 `json:"prob"`
}

// Steer generates from the prompt with the control vector at scale 0 and
// at each of o.Scales (direction.N × scale added to resid_post.N at every
// token, as llama.cpp does) and compares each with scale 0: the greedy
// continuation, KL divergence of the next-token distributions, top tokens,
// the tokens that gain and lose the most probability, and the answers'
// scores. The engine's runners must be models.Generators.
func Steer(e models.Engine, o SteerOptions) (*SteerResult, error) {
	cv := o.Vector
	info := e.ModelInfo()
	nl := info.NLayer
	r := &SteerResult{Model: o.Model, Prompt: o.Prompt, N: o.N, Warnings: []string{}}
	if cv.NEmbd() != info.DModel {
		return nil, fmt.Errorf("%s has directions of %d values but %s has d_model %d: the control vector was made for another model", o.VectorFile, cv.NEmbd(), e.Path(), info.DModel)
	}
	if cv.ModelHint != "" && cv.ModelHint != info.Arch {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the control vector's model_hint is %q, the model is %q", cv.ModelHint, info.Arch))
	}
	if cv.Offset > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the file follows cvector-generator's layer convention (offset %d): direction.N was measured at resid_post.%s and is added, as llama.cpp adds it, at layer N", cv.Offset, "N−"+strconv.Itoa(cv.Offset)))
	}
	chosen, err := o.Layers.Resolve(nl)
	if err != nil {
		return nil, &InputError{Err: err}
	}
	unit, dropped := cv.PerLayer(nl, 1, 0, math.MaxInt32)
	if len(dropped) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("directions for layers %v are ignored: the model has layers 0..%d (llama.cpp ignores them too)", dropped, nl-1))
	}
	var applied []int
	for l, v := range unit {
		if v == nil {
			continue
		}
		if !slices.Contains(chosen, l) {
			unit[l] = nil
			continue
		}
		applied = append(applied, l)
	}
	if len(applied) == 0 {
		return nil, inputErr("no direction of %s falls in the layer range %s of this %d-layer model", o.VectorFile, o.Layers, nl)
	}
	if err := checkScales(o.Scales, unit, applied); err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(applied, func(l int) bool { return diff.Norm(unit[l]) > 0 }) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("every applied direction of %s is zero: steering with it changes nothing", o.VectorFile))
	}
	r.Cvec = SteerVector{File: o.VectorFile, ModelHint: cv.ModelHint, Layers: applied, Offset: cv.Offset, Meta: cv.Meta}
	tokenized, err := TokenizePrompts(e, o.Tokenize, o.Prompt)
	if err != nil {
		return nil, err
	}
	ids := tokenized[0]
	r.Tokens = Tokens(e, ids)

	// answers: prompt + answer tokens, scored in one extra decode per scale
	type answer struct {
		text string
		seq  []int32
	}
	var answers []answer
	var aseqs [][]int32
	for _, a := range o.Answers {
		tail, _, err := AnswerTokens(e, o.Prompt, ids, a, o.Tokenize)
		if err != nil {
			return nil, err
		}
		answers = append(answers, answer{a, slices.Concat(ids, tail)})
		aseqs = append(aseqs, answers[len(answers)-1].seq)
	}
	seqs := append([][]int32{slices.Concat(ids, make([]int32, o.N))}, aseqs...)
	run, err := e.NewRunner(seqs, max(1, len(answers)))
	if err != nil {
		return nil, fmt.Errorf("the prompt (%d tokens) and -n %d generated tokens (counted together here) do not fit: %w; or lower -n", len(ids), o.N, err)
	}
	defer run.Close()
	gen, ok := run.(models.Generator)
	if !ok {
		return nil, &models.NotSupportedError{Engine: e.Path(), What: "generation with a control vector"}
	}
	// The vector is on from the first decode (zeros for scale 0): llama.cpp
	// then keeps the same graph and reads each new scale's values.
	if err := gen.SetControlVector(make([][]float32, nl)); err != nil {
		return nil, err
	}
	step := func(scale float64) (*models.Generation, []SteerAnswer, error) {
		dirs := make([][]float32, len(unit))
		for l, v := range unit {
			if v == nil || scale == 0 {
				continue
			}
			dirs[l] = make([]float32, len(v))
			for i, x := range v {
				dirs[l][i] = float32(float64(x) * scale)
			}
		}
		if err := gen.SetControlVector(dirs); err != nil {
			return nil, nil, err
		}
		g, err := gen.Generate(ids, models.GenerateOptions{N: o.N, StopAtEOG: !o.IgnoreEOS})
		if err != nil {
			return nil, nil, err
		}
		if degenerate(g.First) && scale == 0 {
			// no vector is added at scale 0: the model itself is broken
			return nil, nil, brokenModel(e, gen, ids)
		}
		if degenerate(g.First) {
			return nil, nil, fmt.Errorf("at --scale %g the model's output breaks down (its logits are all equal, NaN or infinite): the vector times the scale overflows float32 inside the model; use a smaller scale", scale)
		}
		var scores []SteerAnswer
		if len(answers) > 0 {
			caches, err := gen.Run(aseqs, nil)
			if err != nil {
				return nil, nil, err
			}
			for i, a := range answers {
				_, lp := ScoreAnswer(e, caches[i], len(ids))
				scores = append(scores, SteerAnswer{Text: a.text, LogProb: lp, Prob: math.Exp(lp)})
			}
		}
		return g, scores, nil
	}
	progress := progressOr(o.Progress)
	progress.Start(1 + len(o.Scales))
	defer progress.Done()
	base, baseAns, err := step(0)
	if err != nil {
		return nil, err
	}
	progress.Update(1)
	baseProbs := lens.Softmax(nil, base.First)
	r.Baseline = steerStep(e, 0, base, baseAns, baseProbs, o.TopK)
	for i, s := range o.Scales {
		g, ans := base, baseAns
		if s != 0 {
			if g, ans, err = step(s); err != nil {
				return nil, err
			}
		}
		r.Scales = append(r.Scales, steerStep(e, s, g, ans, baseProbs, o.TopK))
		progress.Update(i + 2)
	}
	return r, nil
}

// checkScales refuses a scale that is not finite, or whose product with a
// value of an applied direction is beyond float32's range: llama.cpp adds
// the vector in float32, and an infinite value there is the scale's
// fault, not the file's.
func checkScales(scales []float64, dirs [][]float32, applied []int) error {
	var peak float64
	at := -1
	for _, l := range applied {
		for _, x := range dirs[l] {
			if a := math.Abs(float64(x)); a > peak {
				peak, at = a, l
			}
		}
	}
	for _, s := range scales {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return inputErr("--scale %g is not a finite number", s)
		}
		if p := math.Abs(s) * peak; p > math.MaxFloat32 {
			return inputErr("--scale %g times the control vector's largest value (%.4g, at layer %d) is %.4g, beyond float32's range (%.4g): use a scale of at most %.4g in magnitude (far smaller ones keep the model's output meaningful)",
				s, peak, at, p, float64(math.MaxFloat32), math.MaxFloat32/peak)
		}
	}
	return nil
}

// brokenModel explains logits without a prediction at scale 0, where no
// vector is added: a *NonFiniteError naming the first layer whose output
// is not finite (CheckFinite), or, when every value is finite, a plain
// error that blames the model rather than the scale.
func brokenModel(e models.Engine, gen models.Generator, ids []int32) error {
	logits := models.Hook{Kind: models.Logits, Layer: -1}
	cs, err := gen.Run([][]int32{ids}, []models.Hook{logits})
	if err != nil {
		return err
	}
	if err := CheckFinite(e, cs...); err != nil {
		return err
	}
	return fmt.Errorf("%s gives equal logits for every token after the prompt without any control vector (scale 0): the model's weights are broken, not the scale", filepath.Base(e.Path()))
}

// steerStep describes generation g at scale against the baseline's
// next-token probabilities base.
func steerStep(v models.Vocab, scale float64, g *models.Generation, ans []SteerAnswer, base []float32, k int) SteerStep {
	probs := lens.Softmax(nil, g.First)
	st := SteerStep{Scale: scale, Tokens: Tokens(v, g.Tokens), Answers: ans}
	var text strings.Builder
	for _, id := range g.Tokens {
		text.Write(v.Piece(id))
	}
	st.Text = text.String()
	for _, t := range lens.TopK(g.First, k) {
		st.Top = append(st.Top, PredToken{ID: t.ID, Piece: v.Printable(t.ID), Prob: float64(probs[t.ID]), Logit: t.Value})
	}
	delta := make([]float32, len(probs))
	for i := range probs {
		delta[i] = float32(float64(probs[i]) - float64(base[i]))
	}
	st.KL = klDivergence(probs, base)
	shift := func(ts []lens.Token) []ShiftToken {
		var out []ShiftToken
		for _, t := range ts {
			out = append(out, ShiftToken{ID: t.ID, Piece: v.Printable(t.ID), Base: float64(base[t.ID]), Prob: float64(probs[t.ID]), Delta: t.Value})
		}
		return out
	}
	st.Gains, st.Losses = shift(lens.TopK(delta, k)), shift(lens.BottomK(delta, k))
	if scale == 0 {
		st.Gains, st.Losses = nil, nil
	}
	return st
}

// klDivergence returns KL(p ‖ q) = Σ p log(p/q) in nats, over the tokens
// where both probabilities are positive: a token that float32 rounds to
// probability 0 in either distribution adds nothing (instead of +Inf
// where only q is 0). It panics if the lengths differ.
func klDivergence(p, q []float32) float64 {
	if len(p) != len(q) {
		panic("analysis: klDivergence: lengths differ")
	}
	var kl float64
	for i := range p {
		a, b := float64(p[i]), float64(q[i])
		if a > 0 && b > 0 {
			kl += a * math.Log(a/b)
		}
	}
	return kl
}

// degenerate reports whether logits carry no prediction: a NaN or an
// infinity, or every logit equal (a residual that overflowed float32 is
// normalised to zeros).
func degenerate(logits []float32) bool {
	if len(logits) == 0 {
		return false
	}
	lo, hi := logits[0], logits[0]
	for _, x := range logits {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return true
		}
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo == hi
}
