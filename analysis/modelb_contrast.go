package analysis

import (
	"fmt"
	"math"
	"slices"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// `contrast --model-b`: every prompt of a prompt file through two model
// files with one tokenizer; per component, the mean and spread over the
// prompts of how far the two models' activations are apart, and the KL
// divergence of their next-token distributions per prompt.

// ModelBContrastOptions configure ContrastModels.
type ModelBContrastOptions struct {
	ModelA, ModelB string
	// Prompts are run through both models; Sources name them ("file:line").
	Prompts, Sources []string
	Tokenize         models.TokenizeOptions
	// Pos is the position compared in each prompt (one index).
	Pos      RowSpec
	Kinds    []models.Kind
	Parallel int
}

// ModelBContrastResult is the document `contrast --model-b --json` prints
// (docs/geometry.md).
type ModelBContrastResult struct {
	ModelA   string   `json:"model_a"`
	ModelB   string   `json:"model_b"`
	Warnings []string `json:"warnings"`
	// Components are ranked by MeanRel, the mean over prompts of
	// ‖a − b‖/mean(‖a‖, ‖b‖) at the compared position; SDRel is its
	// standard deviation, MaxRel its largest value.
	Components []ModelBComponent `json:"components"`
	// Prompts lists each prompt's KL(A ‖ B) and KL(B ‖ A) of the
	// next-token distributions, and whether the top token agrees.
	Prompts []ModelBPrompt `json:"prompts"`
	// MeanKL is the mean of KL(A ‖ B) over the prompts; TopAgree the
	// fraction of prompts whose top token agrees.
	MeanKL   float64 `json:"mean_kl_a_b"`
	TopAgree float64 `json:"top_agree"`
}

// ModelBComponent is one component's divergence over the prompts.
type ModelBComponent struct {
	Hook    string  `json:"hook"`
	Short   string  `json:"short"`
	Layer   int     `json:"layer"`
	Kind    string  `json:"kind"`
	MeanRel float64 `json:"mean_rel"`
	SDRel   float64 `json:"sd_rel"`
	MaxRel  float64 `json:"max_rel"`
	MeanCos float64 `json:"mean_cos"`
}

// ModelBPrompt is one prompt's next-token divergence.
type ModelBPrompt struct {
	Source string  `json:"source"`
	Pos    int     `json:"pos"`
	KLAB   float64 `json:"kl_a_b"`
	KLBA   float64 `json:"kl_b_a"`
	TopA   int32   `json:"top_a"`
	TopB   int32   `json:"top_b"`
}

// ContrastModels runs every prompt through ea and eb and compares them
// component by component. The models must share a tokenizer and d_model
// and layer count (component diffs compare the same hook of both).
func ContrastModels(ea, eb models.Engine, o ModelBContrastOptions) (*ModelBContrastResult, error) {
	if err := CheckSameVocab(ea, eb); err != nil {
		return nil, err
	}
	ia, ib := ea.ModelInfo(), eb.ModelInfo()
	if ia.DModel != ib.DModel || ia.NLayer != ib.NLayer {
		return nil, inputErr("%s has %d layers of width %d and %s %d of %d: contrast --model-b compares components hook by hook and needs the same shape (compare --model-b maps layers of different counts and still compares predictions of different widths)",
			ea.Path(), ia.NLayer, ia.DModel, eb.Path(), ib.NLayer, ib.DModel)
	}
	if len(o.Prompts) == 0 {
		return nil, inputErr("no prompts")
	}
	if o.Pos.All || len(o.Pos.Indices) != 1 {
		return nil, inputErr("--pos with --model-b takes one position (last, or an index such as -2)")
	}
	for _, k := range o.Kinds {
		if err := eb.HookTable().Check(k); err != nil {
			return nil, &InputError{Err: fmt.Errorf("model B: %w", err)}
		}
	}
	ids, err := TokenizePrompts(ea, o.Tokenize, o.Prompts...)
	if err != nil {
		return nil, err
	}
	idsB, err := TokenizePrompts(eb, o.Tokenize, o.Prompts...)
	if err != nil {
		return nil, err
	}
	pos := make([][]int, len(ids))
	for i, s := range ids {
		if !slices.Equal(s, idsB[i]) {
			return nil, inputErr("%s: the two models tokenize the prompt differently; --model-b needs the same tokens", o.Sources[i])
		}
		rs, err := o.Pos.Resolve(len(s))
		if err != nil {
			return nil, inputErr("%s: %v", o.Sources[i], err)
		}
		pos[i] = rs[:1]
	}
	var hooks []models.Hook
	for l := range ia.NLayer {
		for _, k := range o.Kinds {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
	}
	hooks = models.SortHooks(hooks)
	par := max(1, min(o.Parallel, len(ids)))
	run := func(e models.Engine) ([]*models.SeqRows, error) {
		r, err := e.NewRunner(ids, par)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		// the logits too: the prompts' predictions are compared below
		return r.RunRows(ids, pos, append(slices.Clone(hooks), models.Hook{Kind: models.Logits, Layer: -1}))
	}
	ra, err := run(ea)
	if err != nil {
		return nil, err
	}
	rb, err := run(eb)
	if err != nil {
		return nil, err
	}
	res := &ModelBContrastResult{ModelA: o.ModelA, ModelB: o.ModelB, Warnings: []string{}}
	n := float64(len(ids))
	for _, h := range hooks {
		var sum, sum2, mx, cs float64
		for i := range ids {
			a, okA := ra[i].Acts[h]
			b, okB := rb[i].Acts[h]
			if !okA || !okB {
				return nil, fmt.Errorf("analysis: the engine returned no %s", h.Name())
			}
			x, y := a.Row(0), b.Row(0)
			rel := diff.RelDist(x, y)
			if math.IsNaN(rel) || math.IsInf(rel, 0) {
				return nil, fmt.Errorf("%s: %s is not finite in one of the models: the model overflowed", o.Sources[i], h.Short())
			}
			sum += rel
			sum2 += rel * rel
			mx = max(mx, rel)
			cs += diff.Cosine(x, y)
		}
		mean := sum / n
		res.Components = append(res.Components, ModelBComponent{Hook: h.Name(), Short: h.Short(), Layer: h.Layer, Kind: string(h.Kind),
			MeanRel: mean, SDRel: math.Sqrt(max(sum2/n-mean*mean, 0)), MaxRel: mx, MeanCos: cs / n})
	}
	slices.SortStableFunc(res.Components, func(x, y ModelBComponent) int { return cmpDesc(x.MeanRel, y.MeanRel) })
	agree := 0
	for i := range ids {
		la, lb := ra[i].Logits.Row(0), rb[i].Logits.Row(0)
		p := ModelBPrompt{Source: o.Sources[i], Pos: pos[i][0], KLAB: klLogits(la, lb), KLBA: klLogits(lb, la), TopA: argmax(la), TopB: argmax(lb)}
		if p.TopA == p.TopB {
			agree++
		}
		res.MeanKL += p.KLAB / n
		res.Prompts = append(res.Prompts, p)
	}
	res.TopAgree = float64(agree) / n
	return res, nil
}

// argmax is the index of the largest value, the lowest on ties.
func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
