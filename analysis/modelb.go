package analysis

import (
	"fmt"
	"math"
	"slices"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// This file is `compare --model-b`: one prompt through two model files
// that share a tokenizer (F16 against a quantization, a fine-tune against
// its base, two sizes of one family), ranked by where their activations
// differ, with both next-token distributions, their KL divergence, and
// each model's logit lens.

// ModelBOptions configure CompareModels.
type ModelBOptions struct {
	// ModelA and ModelB name the models in the result.
	ModelA, ModelB string
	Prompt         string
	Tokenize       models.TokenizeOptions
	// Positions are compared (diff.ParsePositions notation: "last", "-1",
	// "all"); both models see the same tokens.
	Positions string
	Kinds     []models.Kind
	Sort      string
	// TopK predictions, LensK tokens per lens cell; each at least 1.
	TopK, LensK int
	Lens        models.LensMode
	// LayerMap, when not nil, gives for each layer of A the layer of B it
	// is compared with; nil maps layers of equal counts one to one, and
	// otherwise by relative depth.
	LayerMap []int
}

// ModelBResult is the document `compare --model-b --json` prints
// (docs/geometry.md).
type ModelBResult struct {
	ModelA   string   `json:"model_a"`
	ModelB   string   `json:"model_b"`
	Prompt   string   `json:"prompt"`
	Tokens   []Token  `json:"tokens"`
	Pos      []int    `json:"positions"`
	Warnings []string `json:"warnings"`
	// TopA and TopB are each model's next tokens after the last compared
	// position; KLAB is KL(A ‖ B) of those distributions and KLBA KL(B ‖
	// A), in nats.
	TopA []PredToken `json:"top_a"`
	TopB []PredToken `json:"top_b"`
	KLAB float64     `json:"kl_a_b"`
	KLBA float64     `json:"kl_b_a"`
	// LayerMap maps a layer of A to the layer of B it is compared with
	// (the same layer when the counts agree, the same relative depth
	// otherwise).
	LayerMap []int `json:"layer_map"`
	// Components are ranked by how much the two models differ there;
	// null when the models' d_model differ (no component can be
	// compared).
	Components []Component       `json:"components"`
	Layers     []diff.LayerRow   `json:"-"`
	Lens       []ModelBLensLayer `json:"lens"`
}

// ModelBLensLayer is each model's logit lens of resid_post at one layer of
// A and its mapped layer of B.
type ModelBLensLayer struct {
	Layer  int         `json:"layer"`
	LayerB int         `json:"layer_b"`
	A      []LensToken `json:"a"`
	B      []LensToken `json:"b"`
}

// CheckSameVocab returns an *InputError naming the first token where the
// vocabularies of a and b differ (count, text or kind), nil when they are
// the same token for token.
func CheckSameVocab(a, b models.Engine) error {
	na, nb := a.NVocab(), b.NVocab()
	count := ""
	if na != nb {
		count = fmt.Sprintf("%s has %d tokens, %s %d; ", a.Path(), na, b.Path(), nb)
	}
	for id := range int32(min(na, nb)) {
		if ta, tb := a.Text(id), b.Text(id); ta != tb || a.Kind(id) != b.Kind(id) {
			return inputErr("the models do not share a tokenizer: %stoken %d is %q (%s) in %s and %q (%s) in %s; --model-b compares models with one vocabulary",
				count, id, ta, a.Kind(id), a.Path(), tb, b.Kind(id), b.Path())
		}
	}
	if na != nb {
		return inputErr("the models do not share a tokenizer: %sthe first %d agree; --model-b compares models with one vocabulary", count, min(na, nb))
	}
	return nil
}

// layerMap maps each of nA layers to one of nB at the same relative depth
// (the first to the first, the last to the last).
func layerMap(nA, nB int) []int {
	m := make([]int, nA)
	for l := range m {
		if nA == nB || nA == 1 {
			m[l] = min(l, nB-1)
			continue
		}
		m[l] = int(math.Round(float64(l) * float64(nB-1) / float64(nA-1)))
	}
	return m
}

// CompareModels runs o.Prompt through ea and eb and compares them.
func CompareModels(ea, eb models.Engine, o ModelBOptions) (*ModelBResult, error) {
	if err := CheckSameVocab(ea, eb); err != nil {
		return nil, err
	}
	if err := CheckPosSpec(o.Positions); err != nil {
		return nil, err
	}
	idsA, err := TokenizePrompts(ea, o.Tokenize, o.Prompt)
	if err != nil {
		return nil, err
	}
	idsB, err := TokenizePrompts(eb, o.Tokenize, o.Prompt)
	if err != nil {
		return nil, err
	}
	ids := idsA[0]
	if !slices.Equal(ids, idsB[0]) {
		return nil, inputErr("the two models tokenize the prompt differently (%d and %d tokens): their tokenizer settings differ (pre-tokenizer, BOS); --model-b needs the same tokens", len(ids), len(idsB[0]))
	}
	pairs, err := diff.ParsePositions(o.Positions, len(ids), len(ids))
	if err != nil {
		return nil, &InputError{Err: err}
	}
	ia, ib := ea.ModelInfo(), eb.ModelInfo()
	r := &ModelBResult{ModelA: o.ModelA, ModelB: o.ModelB, Prompt: o.Prompt, Tokens: Tokens(ea, ids), Warnings: []string{}}
	r.Warnings = append(r.Warnings, BOSWarnings(ea, o.Tokenize, "the prompt", ids)...)
	if nv := ea.NVocab(); o.TopK > nv || o.LensK > nv {
		o.TopK, o.LensK = min(o.TopK, nv), min(o.LensK, nv)
	}
	var rows []int
	for _, p := range pairs {
		if p.A != p.B {
			return nil, inputErr("--pos %q pairs different positions; with --model-b both models read the same tokens: give positions such as last, -2 or all", o.Positions)
		}
		rows = append(rows, p.A)
		r.Pos = append(r.Pos, p.A)
	}
	rows = slices.Compact(slices.Sorted(slices.Values(rows)))
	r.LayerMap = layerMap(ia.NLayer, ib.NLayer)
	if o.LayerMap != nil {
		if len(o.LayerMap) != ia.NLayer {
			return nil, inputErr("--layer-map gives %d layers; %s has %d: map every layer of A", len(o.LayerMap), ea.Path(), ia.NLayer)
		}
		for l, m := range o.LayerMap {
			if m < 0 || m >= ib.NLayer {
				return nil, inputErr("--layer-map maps layer %d to %d; %s has layers 0..%d", l, m, eb.Path(), ib.NLayer-1)
			}
		}
		r.LayerMap = slices.Clone(o.LayerMap)
	}
	sameWidth := ia.DModel == ib.DModel
	if !sameWidth {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s has d_model %d and %s %d: activations of different widths cannot be compared, so there is no component ranking; the predictions and each model's logit lens are shown", ea.Path(), ia.DModel, eb.Path(), ib.DModel))
	}
	if ia.NLayer != ib.NLayer && o.LayerMap == nil {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s has %d layers and %s %d: layer l of A is compared with the layer of B at the same relative depth (layer_map)", ea.Path(), ia.NLayer, eb.Path(), ib.NLayer))
	}
	kinds := o.Kinds
	for _, k := range kinds {
		if err := eb.HookTable().Check(k); err != nil {
			return nil, &InputError{Err: fmt.Errorf("model B: %w", err)}
		}
	}
	hooksFor := func(n int, m []int) []models.Hook {
		var hs []models.Hook
		for l := range n {
			ll := l
			if m != nil {
				ll = m[l]
			}
			hs = append(hs, models.Hook{Kind: models.ResidPost, Layer: ll})
			if sameWidth {
				for _, k := range kinds {
					hs = append(hs, models.Hook{Kind: k, Layer: ll})
				}
			}
		}
		return models.SortHooks(uniqueHooks(append(hs, models.Hook{Kind: models.Logits, Layer: -1})))
	}
	run := func(e models.Engine, hooks []models.Hook) (*models.Cache, error) {
		runner, err := e.NewRunner([][]int32{ids}, 1)
		if err != nil {
			return nil, err
		}
		defer runner.Close()
		out, err := runner.RunRows([][]int32{ids}, [][]int{rows}, hooks)
		if err != nil {
			return nil, err
		}
		c := out[0].Cache(ids, e.ModelInfo().NLayer)
		return c, CheckFinite(e, c)
	}
	ca, err := run(ea, hooksFor(ia.NLayer, nil))
	if err != nil {
		return nil, err
	}
	cbRaw, err := run(eb, hooksFor(ia.NLayer, r.LayerMap))
	if err != nil {
		return nil, err
	}
	// B's activations re-keyed to A's layers, so that diff.Compare pairs
	// them
	cb := models.NewCache(ids, ia.NLayer)
	for l := range ia.NLayer {
		for _, k := range append([]models.Kind{models.ResidPost}, kinds...) {
			if a, ok := cbRaw.At(models.Hook{Kind: k, Layer: r.LayerMap[l]}); ok {
				cb.Set(&models.Activation{Hook: models.Hook{Kind: k, Layer: l}, Width: a.Width, Data: a.Data})
			}
		}
	}
	lastRow := slices.Index(rows, pairs[len(pairs)-1].A)
	la, lb := LogitsRow(ca, lastRow), LogitsRow(cbRaw, lastRow)
	pa, pb := lens.Softmax(nil, la), lens.Softmax(nil, lb)
	for _, t := range lens.TopK(la, o.TopK) {
		r.TopA = append(r.TopA, PredToken{ID: t.ID, Piece: ea.Printable(t.ID), Prob: float64(pa[t.ID]), Logit: t.Value})
	}
	for _, t := range lens.TopK(lb, o.TopK) {
		r.TopB = append(r.TopB, PredToken{ID: t.ID, Piece: eb.Printable(t.ID), Prob: float64(pb[t.ID]), Logit: t.Value})
	}
	r.KLAB, r.KLBA = klLogits(la, lb), klLogits(lb, la)

	if sameWidth {
		var rankHooks []models.Hook
		for l := range ia.NLayer {
			for _, k := range kinds {
				rankHooks = append(rankHooks, models.Hook{Kind: k, Layer: l})
			}
		}
		rp := make([]diff.PosPair, len(pairs))
		for i, p := range pairs {
			j := slices.Index(rows, p.A)
			rp[i] = diff.PosPair{A: j, B: j}
		}
		comps, err := diff.Compare(ca, cb, models.SortHooks(rankHooks), rp)
		if err != nil {
			return nil, err
		}
		ranked, err := diff.Rank(comps, o.Sort)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		r.Layers = diff.ByLayer(comps)
		r.Components = []Component{}
		for _, c := range ranked {
			r.Components = append(r.Components, Component{
				Hook: c.Hook.Name(), Short: c.Hook.Short(), Layer: c.Hook.Layer, Kind: string(c.Hook.Kind),
				L2: c.L2, RelL2: c.RelL2, Cosine: c.Cosine, NormA: c.NormA, NormB: c.NormB,
			})
		}
	}

	// each model's lens of its own resid_post
	lensOf := func(e models.Engine, c *models.Cache, layers []int) ([][]LensToken, error) {
		u, err := e.NewUnembedder()
		if err != nil {
			return nil, err
		}
		defer u.Close()
		d := e.ModelInfo().DModel
		x := make([]float32, 0, len(layers)*d)
		for _, l := range layers {
			a, ok := c.At(models.Hook{Kind: models.ResidPost, Layer: l})
			if !ok {
				return nil, fmt.Errorf("analysis: the engine returned no resid_post.%d", l)
			}
			x = append(x, a.Row(lastRow)...)
		}
		lg, err := u.Unembed(nil, x, len(layers), o.Lens)
		if err != nil {
			return nil, err
		}
		nv := e.NVocab()
		out := make([][]LensToken, len(layers))
		for i := range layers {
			out[i] = lensTokens(e, lens.TopK(lg[i*nv:(i+1)*nv], o.LensK))
		}
		return out, nil
	}
	layersA := make([]int, ia.NLayer)
	for l := range layersA {
		layersA[l] = l
	}
	lensA, err := lensOf(ea, ca, layersA)
	if err != nil {
		return nil, err
	}
	lensB, err := lensOf(eb, cbRaw, r.LayerMap)
	if err != nil {
		return nil, err
	}
	for l := range ia.NLayer {
		r.Lens = append(r.Lens, ModelBLensLayer{Layer: l, LayerB: r.LayerMap[l], A: lensA[l], B: lensB[l]})
	}
	return r, nil
}

// klLogits is KL(softmax(p) ‖ softmax(q)) in nats, in float64.
func klLogits(p, q []float32) float64 {
	lse := func(x []float32) float64 {
		m := math.Inf(-1)
		for _, v := range x {
			m = max(m, float64(v))
		}
		var s float64
		for _, v := range x {
			s += math.Exp(float64(v) - m)
		}
		return m + math.Log(s)
	}
	lp, lq := lse(p), lse(q)
	var kl float64
	for i := range p {
		a := float64(p[i]) - lp
		kl += math.Exp(a) * (a - (float64(q[i]) - lq))
	}
	return max(kl, 0)
}
