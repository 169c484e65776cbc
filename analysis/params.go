package analysis

import (
	"fmt"
	"math"
	"slices"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// This file is `lldiff params`: a model's parameters read as tokens, after
// Dar, Geva, Gupta and Berant, "Analyzing Transformers in Embedding
// Space" (2022). An MLP neuron writes column N of W_down into the residual
// stream and reads it through row N of W_up (and W_gate); an attention
// head moves information through its OV circuit Eᵀ W_V W_O E and chooses
// where to look through its QK circuit Eᵀ W_Q W_Kᵀ E. Each is projected
// onto the vocabulary. Weights are read from the file as stored and
// decoded a block of rows at a time (models.Weights).

// ParamsOptions configure Params.
type ParamsOptions struct {
	// Model names the model in the result.
	Model string
	// Layer is the layer examined.
	Layer int
	// Neurons are MLP neurons to project; TopNeurons, when > 0, adds the
	// first TopNeurons neurons of the layer in the order of By.
	Neurons    []int
	TopNeurons int
	// By orders neurons for TopNeurons: "norm" (‖write direction‖), "cos"
	// (|cos(write, along)|, needs Along) or "act" (|activation difference
	// × projection|, needs an Along prompt pair).
	By string
	// Heads are attention heads whose OV and QK circuits are computed.
	Heads []int
	// K is the tokens per list, Pairs the token pairs per circuit.
	K, Pairs int
	// Lens is LensRaw (Eᵀv, as in the paper) or LensGamma (the final
	// norm's weight γ applied first, and the layer's input norm weight on
	// the embeddings a head reads).
	Lens models.LensMode
	// Along, when set, ranks the layer's neurons and heads by how much they
	// write along its direction at AlongHook (default resid_post of Layer).
	// A prompt pair (Kind "pair") is run on the engine: its direction is
	// the activation difference A − B, and the neurons' and heads' actual
	// contributions to it are computed too.
	Along     *VecSource
	AlongHook string
	// Pos is the position of an Along prompt pair (one index).
	Pos      RowSpec
	Tokenize models.TokenizeOptions
	// Rank is the neurons and heads listed in the Along ranking.
	Rank int
	// AllTokens lists every token; by default only normal and user
	// tokens are listed (byte-fallback, control, unknown and unused tokens, often
	// untrained rows that share one value, are left out).
	AllTokens bool
}

// ParamsResult is the document `params --json` prints (docs/geometry.md).
type ParamsResult struct {
	Model    string `json:"model"`
	Arch     string `json:"arch"`
	Layer    int    `json:"layer"`
	LensNorm string `json:"lens_norm"`
	// Tensors names the matrices read and says what their biases do.
	Tensors []string        `json:"tensors"`
	Neurons []NeuronParams  `json:"neurons,omitempty"`
	Heads   []HeadParams    `json:"heads,omitempty"`
	Along   *AlongResult    `json:"along,omitempty"`
	Notes   []string        `json:"notes"`
	Shape   ParamsModelSize `json:"shape"`
}

// ParamsModelSize are the sizes Params read from the file.
type ParamsModelSize struct {
	NLayer  int `json:"n_layer"`
	DModel  int `json:"d_model"`
	DFF     int `json:"d_ff"`
	NHead   int `json:"n_head"`
	NHeadKV int `json:"n_head_kv"`
	DHead   int `json:"d_head"`
	NVocab  int `json:"n_vocab"`
}

// Projection is a vector projected onto the vocabulary: its tokens with
// the largest (Top) and smallest (Bottom) values.
type Projection struct {
	Top    []LensToken `json:"top"`
	Bottom []LensToken `json:"bottom"`
}

// NeuronParams is one MLP neuron read as tokens.
type NeuronParams struct {
	Index int `json:"index"`
	// WriteNorm is ‖column N of W_down‖.
	WriteNorm float64 `json:"write_norm"`
	// Write is W_U applied to the write direction; Up and Gate to the read
	// directions (rows N of W_up and W_gate; Gate is absent without a
	// gate).
	Write Projection  `json:"write"`
	Up    Projection  `json:"up"`
	Gate  *Projection `json:"gate,omitempty"`
	// UpBias is b_up[N] (gpt2, gptneox): it shifts where the neuron turns
	// on; it is no direction.
	UpBias *float64 `json:"up_bias,omitempty"`
}

// HeadParams is one attention head's circuits as token pairs.
type HeadParams struct {
	Head int `json:"head"`
	// KVHead is the key/value head the head reads (grouped-query
	// attention: head h reads h / (n_head / n_head_kv)).
	KVHead int `json:"kv_head"`
	// OV pairs an input token (its embedding, attended to) with the output
	// token its value moves up (Top) or down (Bottom) in the logits.
	OV Circuit `json:"ov"`
	// QK pairs a query token with a key token: the attention score
	// q·k/√d_head between their embeddings at relative position 0.
	QK Circuit `json:"qk"`
}

// Circuit is the largest and smallest entries of a token-pair circuit.
type Circuit struct {
	Top    []TokenPair `json:"top"`
	Bottom []TokenPair `json:"bottom"`
}

// AlongResult ranks a layer's neurons and heads by how much they write
// along a direction.
type AlongResult struct {
	Source string  `json:"source"`
	Kind   string  `json:"kind"`
	Hook   string  `json:"hook"`
	Norm   float64 `json:"norm"`
	// Prompts are the pair's prompts, with Pos the positions compared.
	Prompts []string `json:"prompts,omitempty"`
	Pos     []int    `json:"pos,omitempty"`
	// Neurons are ranked by |Contribution| given prompts, by |Cos|
	// otherwise; Heads likewise by |Contribution| or Cos.
	Neurons []AlongNeuron `json:"neurons"`
	Heads   []AlongHead   `json:"heads"`
	// MLPOut and AttnOut are (out(A) − out(B))·û from the engine's hooks,
	// which the sums of the neurons' and heads' contributions (plus, for
	// heads, nothing: biases cancel in a difference) should equal:
	// NeuronSum and HeadSum. Given prompts only.
	MLPOut    *float64 `json:"mlp_out_along,omitempty"`
	NeuronSum *float64 `json:"neuron_sum,omitempty"`
	AttnOut   *float64 `json:"attn_out_along,omitempty"`
	HeadSum   *float64 `json:"head_sum,omitempty"`
}

// AlongNeuron is one neuron's alignment with the direction û.
type AlongNeuron struct {
	Index int `json:"index"`
	// Cos is cos(w, û) for the write direction w; Proj is w·û.
	Cos  float64 `json:"cos"`
	Proj float64 `json:"proj"`
	// ActA and ActB are the neuron's activations at the two prompts,
	// Contribution (ActA − ActB)·Proj: what it wrote along û.
	ActA         *float64 `json:"act_a,omitempty"`
	ActB         *float64 `json:"act_b,omitempty"`
	Contribution *float64 `json:"contribution,omitempty"`
}

// AlongHead is one head's alignment with the direction û.
type AlongHead struct {
	Head   int `json:"head"`
	KVHead int `json:"kv_head"`
	// Cos is the largest cosine between û and any vector the head can
	// write: ‖P û‖/‖û‖ with P the projection onto the column space of
	// W_O^h.
	Cos float64 `json:"cos"`
	// Contribution is (W_O^h (z_h(A) − z_h(B)))·û.
	Contribution *float64 `json:"contribution,omitempty"`
}

// paramTensors names one layer's matrices in a GGUF file.
type paramTensors struct {
	arch               string
	up, gate, down     string // gate "" without a gate
	upBias             string
	q, k, v            string // the same fused tensor for gpt2 and gptneox
	qOff, kOff, vOff   int    // first row of Q, K and V in it
	out                string
	attnNorm, attnBias string
	ffnNorm, ffnBias   string
	layerNorm          bool
	parallel           bool
}

func layerTensors(info *models.Info, f *models.File, l int) (*paramTensors, error) {
	p := fmt.Sprintf("blk.%d.", l)
	t := &paramTensors{arch: info.Arch, layerNorm: info.LayerNorm, parallel: info.ParallelResidual,
		up: p + "ffn_up.weight", down: p + "ffn_down.weight", out: p + "attn_output.weight",
		attnNorm: p + "attn_norm.weight", ffnNorm: p + "ffn_norm.weight"}
	switch info.Arch {
	case "llama", "qwen2":
		t.gate = p + "ffn_gate.weight"
		t.q, t.k, t.v = p+"attn_q.weight", p+"attn_k.weight", p+"attn_v.weight"
	case "gpt2", "gptneox":
		t.q = p + "attn_qkv.weight"
		t.k, t.v = t.q, t.q
		t.kOff = info.NHead * info.DHead
		t.vOff = t.kOff + info.NHeadKV*info.DHead
		t.upBias = p + "ffn_up.bias"
		t.attnBias, t.ffnBias = p+"attn_norm.bias", p+"ffn_norm.bias"
	default:
		return nil, inputErr("params reads llama, qwen2, gpt2 and gptneox models; %s is %q", f.Path, info.Arch)
	}
	if n, _ := f.Uint(info.Arch + ".expert_count"); n > 0 {
		return nil, inputErr("%s is a mixture-of-experts model (%d experts): params reads dense MLPs only", f.Path, n)
	}
	for _, name := range []string{t.up, t.gate, t.down, t.q, t.k, t.v, t.out} {
		if name == "" {
			continue
		}
		if _, ok := f.Tensor(name); !ok {
			return nil, fmt.Errorf("%s has no tensor %s", f.Path, name)
		}
	}
	return t, nil
}

// describe says which matrices the analysis reads and what the biases do.
func (t *paramTensors) describe(info *models.Info, u *models.Unembedding) []string {
	l := t.down[:len(t.down)-len("ffn_down.weight")]
	s := []string{
		fmt.Sprintf("neuron N writes column N of %s (d_model values) and reads row N of %s", t.down, t.up),
	}
	if t.gate != "" {
		s = append(s, fmt.Sprintf("its activation is silu(row N of %s · x) × (row N of %s · x), x = RMSNorm(resid_mid) ⊙ %s", t.gate, t.up, t.ffnNorm))
	} else {
		s = append(s, fmt.Sprintf("its activation is gelu(row N of %s · x + %s[N]), x = LayerNorm(%s) with %s and %s; %sffn_down.bias is added whatever the neurons do and belongs to no neuron",
			t.up, t.upBias, map[bool]string{true: "resid_pre (parallel residual)", false: "resid_mid"}[t.parallel], t.ffnNorm, t.ffnBias, l))
	}
	if t.q == t.k {
		s = append(s, fmt.Sprintf("head h: W_Q, W_K and W_V are rows %d.., %d.. and %d.. of the fused %s, each d_head rows per head; W_O^h is columns h·d_head.. of %s; the biases of %s and %sattn_output.bias shift scores and outputs by amounts that do not depend on the token pair and are left out of the circuits",
			t.qOff, t.kOff, t.vOff, t.q, t.out, t.q[:len(t.q)-len(".weight")]+".bias", l))
	} else {
		s = append(s, fmt.Sprintf("head h: W_Q^h is rows h·d_head.. of %s, W_K and W_V rows g·d_head.. of %s and %s (g the head's kv head), W_O^h columns h·d_head.. of %s", t.q, t.k, t.v, t.out))
		if t.arch == "qwen2" {
			s = append(s, "qwen2's biases on Q, K and V do not depend on the token pair and are left out of the circuits")
		}
	}
	tied := ""
	if u.Tied {
		tied = " (tied: the same matrix as the embedding)"
	}
	s = append(s, fmt.Sprintf("tokens are read through the unembedding %s%s; circuits take their inputs from %s", u.Unembed, tied, models.EmbedTensor))
	return s
}

// Params reads the parameters of o.Layer from w as tokens: the neurons'
// write and read directions through the unembedding, the heads' OV and QK
// circuits as token pairs, and, with o.Along, the layer's neurons and
// heads ranked by how much they write along a direction. v names tokens;
// e runs an Along prompt pair and may be nil otherwise.
func Params(w *models.Weights, v models.Vocab, e models.Engine, o ParamsOptions) (*ParamsResult, error) {
	f := w.File
	info, err := f.Info()
	if err != nil {
		return nil, err
	}
	if o.Lens != models.LensRaw && o.Lens != models.LensGamma {
		return nil, inputErr("--lens-norm %s: params projects weights, not activations; use raw (Eᵀv, as in the paper) or gamma (the norm weight γ applied first)", o.Lens)
	}
	if o.Layer < 0 || o.Layer >= info.NLayer {
		return nil, inputErr("layer %d: %s has layers 0..%d", o.Layer, f.Path, info.NLayer-1)
	}
	u, err := models.FindUnembedding(f)
	if err != nil {
		return nil, err
	}
	if v.NVocab() != u.NVocab {
		return nil, fmt.Errorf("the tokenizer has %d tokens but %s has %d rows", v.NVocab(), u.Unembed, u.NVocab)
	}
	t, err := layerTensors(info, f, o.Layer)
	if err != nil {
		return nil, err
	}
	dff, _, err := w.Shape(t.up)
	if err != nil {
		return nil, err
	}
	r := &ParamsResult{Model: o.Model, Arch: info.Arch, Layer: o.Layer, LensNorm: o.Lens.String(), Notes: []string{},
		Tensors: t.describe(info, u),
		Shape:   ParamsModelSize{info.NLayer, info.DModel, dff, info.NHead, info.NHeadKV, info.DHead, u.NVocab}}
	for _, n := range o.Neurons {
		if n < 0 || n >= dff {
			return nil, inputErr("neuron %d: layer %d has neurons 0..%d", n, o.Layer, dff-1)
		}
	}
	for _, h := range o.Heads {
		if h < 0 || h >= info.NHead {
			return nil, inputErr("head %d: the model has heads 0..%d", h, info.NHead-1)
		}
	}
	finalView := residualView{mode: o.Lens, layerNorm: u.LayerNorm}
	if o.Lens == models.LensGamma {
		if finalView.gamma, err = w.Vector(u.Norm, info.DModel); err != nil {
			return nil, err
		}
		if t.layerNorm {
			r.Notes = append(r.Notes, "gamma: vectors are centred and multiplied by the final LayerNorm's γ before W_U (β is left out: it is no direction)")
		} else {
			r.Notes = append(r.Notes, "gamma: vectors are multiplied by the final RMSNorm's γ before W_U")
		}
	} else {
		r.Notes = append(r.Notes, "raw: vectors are multiplied by W_U as they are (Eᵀv), without the final norm")
	}

	keep := make([]bool, u.NVocab)
	skipped := 0
	for id := range keep {
		k := v.Kind(int32(id))
		keep[id] = o.AllTokens || k == models.KindNormal || k == models.KindUser
		if !keep[id] {
			skipped++
		}
	}
	if skipped > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d byte-fallback, control, unknown and unused tokens are left out of the lists (often untrained rows that share one value); --all-tokens lists them", skipped))
	}
	if skipped == u.NVocab {
		return nil, inputErr("the vocabulary has no normal tokens to list: pass --all-tokens")
	}

	// the Along ranking first: it may choose the neurons to project
	var along *alongData
	if o.Along != nil {
		if along, err = computeAlong(w, e, info, t, dff, o); err != nil {
			return nil, err
		}
		r.Along = along.result
	}
	neurons := slices.Clone(o.Neurons)
	if o.TopNeurons > 0 {
		order, err := rankNeurons(w, t, dff, o, along)
		if err != nil {
			return nil, err
		}
		for _, n := range order[:min(o.TopNeurons, len(order))] {
			if !slices.Contains(neurons, n) {
				neurons = append(neurons, n)
			}
		}
	}
	if len(neurons) > 0 {
		if r.Neurons, err = projectNeurons(w, v, u, t, finalView, neurons, o.K, keep); err != nil {
			return nil, err
		}
	}
	for _, h := range o.Heads {
		hp, err := headCircuits(w, v, u, info, t, finalView, h, o, keep)
		if err != nil {
			return nil, err
		}
		r.Heads = append(r.Heads, *hp)
	}
	if len(o.Heads) > 0 && info.RopeBase > 0 {
		r.Notes = append(r.Notes, "QK pairs are for relative position 0: rotary embeddings rotate queries and keys by their positions, so at other distances the scores differ")
	}
	if len(o.Heads) > 0 {
		r.Notes = append(r.Notes, "circuits read token embeddings, not the residual stream of this layer: they say what a head does with a token's own embedding (layer 0 sees exactly that)")
	}
	return r, nil
}

// columns returns columns cols of the named tensor (rows of a ggml
// tensor are the matrix's rows): out[c][r] = row_r[cols[c]]; and, when
// along is not nil, for every column c of the tensor Σ_r row_r[c]·along[r]
// and Σ_r row_r[c]² (accumulated in float64).
func columns(w *models.Weights, name string, cols []int, along []float32) (out [][]float32, dots, sq []float64, err error) {
	rows, n, err := w.Shape(name)
	if err != nil {
		return nil, nil, nil, err
	}
	out = make([][]float32, len(cols))
	for i := range out {
		out[i] = make([]float32, rows)
	}
	if along != nil {
		dots, sq = make([]float64, n), make([]float64, n)
	}
	err = w.EachRows(name, rowBlock(n), func(r0 int, blk []float32) error {
		for r := 0; r < len(blk)/n; r++ {
			row := blk[r*n : (r+1)*n]
			for i, c := range cols {
				out[i][r0+r] = row[c]
			}
			if along != nil {
				a := float64(along[r0+r])
				for c, x := range row {
					dots[c] += float64(x) * a
					sq[c] += float64(x) * float64(x)
				}
			}
		}
		return nil
	})
	return out, dots, sq, err
}

// projectVocab projects each vector through rv and W_U and returns the k
// largest and smallest tokens of each.
func projectVocab(w *models.Weights, v models.Vocab, u *models.Unembedding, rv residualView, vecs [][]float32, k int, keep []bool) ([]Projection, error) {
	in := make([][]float32, len(vecs))
	for i, x := range vecs {
		in[i] = rv.apply(x)
	}
	logits, err := projectRows(w, u.Unembed, in)
	if err != nil {
		return nil, err
	}
	out := make([]Projection, len(vecs))
	for i, lg := range logits {
		for id, ok := range keep {
			if !ok {
				lg[id] = float32(math.NaN()) // ranked after every number
			}
		}
		out[i] = Projection{Top: lensTokens(v, lens.TopK(lg, k)), Bottom: lensTokens(v, lens.BottomK(lg, k))}
	}
	return out, nil
}

func lensTokens(v models.Vocab, ts []lens.Token) []LensToken {
	out := make([]LensToken, len(ts))
	for i, t := range ts {
		out[i] = LensToken{Piece: v.Printable(t.ID), ID: t.ID, Value: t.Value}
	}
	return out
}

// projectNeurons reads the write and read directions of the neurons and
// projects them all in one pass over W_U.
func projectNeurons(w *models.Weights, v models.Vocab, u *models.Unembedding, t *paramTensors, rv residualView, neurons []int, k int, keep []bool) ([]NeuronParams, error) {
	writes, _, _, err := columns(w, t.down, neurons, nil)
	if err != nil {
		return nil, err
	}
	_, d, err := w.Shape(t.up)
	if err != nil {
		return nil, err
	}
	var upBias []float32
	if t.upBias != "" {
		if upBias, err = w.Vector(t.upBias, 1<<30); err != nil {
			return nil, err
		}
	}
	vecs := slices.Clone(writes)
	for _, n := range neurons {
		row := make([]float32, d)
		if err := w.ReadRows(row, t.up, n, 1); err != nil {
			return nil, err
		}
		vecs = append(vecs, row)
		if t.gate != "" {
			g := make([]float32, d)
			if err := w.ReadRows(g, t.gate, n, 1); err != nil {
				return nil, err
			}
			vecs = append(vecs, g)
		}
	}
	proj, err := projectVocab(w, v, u, rv, vecs, k, keep)
	if err != nil {
		return nil, err
	}
	per := 1
	if t.gate != "" {
		per = 2
	}
	out := make([]NeuronParams, len(neurons))
	for i, n := range neurons {
		np := NeuronParams{Index: n, WriteNorm: norm64(writes[i]), Write: proj[i], Up: proj[len(neurons)+per*i]}
		if t.gate != "" {
			g := proj[len(neurons)+per*i+1]
			np.Gate = &g
		}
		if upBias != nil {
			b := float64(upBias[n])
			np.UpBias = &b
		}
		out[i] = np
	}
	return out, nil
}

// rankNeurons orders the layer's neurons by o.By, largest first.
func rankNeurons(w *models.Weights, t *paramTensors, dff int, o ParamsOptions, along *alongData) ([]int, error) {
	score := make([]float64, dff)
	switch o.By {
	case "", "norm":
		_, _, sq, err := columns(w, t.down, nil, make([]float32, dffRows(w, t)))
		if err != nil {
			return nil, err
		}
		for n := range score {
			score[n] = sq[n]
		}
	case "cos":
		if along == nil {
			return nil, inputErr("--by cos ranks neurons by the cosine of their write direction with --along: give --along")
		}
		for n := range score {
			score[n] = math.Abs(along.cos[n])
		}
	case "act":
		if along == nil || along.contrib == nil {
			return nil, inputErr("--by act ranks neurons by what they wrote along the difference of two prompts: give --along \"A|B\"")
		}
		for n := range score {
			score[n] = math.Abs(along.contrib[n])
		}
	default:
		return nil, inputErr("--by %q: use norm, cos or act", o.By)
	}
	order := make([]int, dff)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case score[a] > score[b]:
			return -1
		case score[a] < score[b]:
			return 1
		}
		return 0
	})
	return order, nil
}

// dffRows is the row count of W_down: d_model.
func dffRows(w *models.Weights, t *paramTensors) int {
	rows, _, _ := w.Shape(t.down)
	return rows
}

// headMatrices reads head h's W_Q, W_K and W_V rows (d_head × d_model
// each, row-major) and W_O^h as d_head rows of d_model (its columns).
func headMatrices(w *models.Weights, info *models.Info, t *paramTensors, h int) (q, k, v, o []float32, err error) {
	d, dh := info.DModel, info.DHead
	g := h / (info.NHead / info.NHeadKV)
	read := func(name string, r0 int) []float32 {
		if err != nil {
			return nil
		}
		m := make([]float32, dh*d)
		err = w.ReadRows(m, name, r0, dh)
		return m
	}
	q = read(t.q, t.qOff+h*dh)
	k = read(t.k, t.kOff+g*dh)
	v = read(t.v, t.vOff+g*dh)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cols := make([]int, dh)
	for i := range cols {
		cols[i] = h*dh + i
	}
	oc, _, _, err := columns(w, t.out, cols, nil)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return q, k, v, slices.Concat(oc...), nil
}

// headCircuits computes head h's OV and QK circuits as token pairs,
// factored through d_head: OV[i][j] = (W_V^h e_i)·(W_O^hᵀ u_j) and
// QK[i][j] = (W_Q^h e_i)·(W_K^g e_j)/√d_head, with e the embeddings (read
// through the layer's attention norm weight in gamma mode) and u the rows
// of W_U (read through the final norm weight in gamma mode).
func headCircuits(w *models.Weights, v models.Vocab, u *models.Unembedding, info *models.Info, t *paramTensors, final residualView, h int, o ParamsOptions, keep []bool) (*HeadParams, error) {
	q, k, val, out, err := headMatrices(w, info, t, h)
	if err != nil {
		return nil, err
	}
	dh := info.DHead
	in := residualView{mode: o.Lens, layerNorm: t.layerNorm}
	if o.Lens == models.LensGamma {
		if in.gamma, err = w.Vector(t.attnNorm, info.DModel); err != nil {
			return nil, err
		}
	}
	// the output side: u_j read through the final view is (γ⊙(C u_j)) for a
	// LayerNorm's centring C, so W_O^hᵀ applied to it needs W_O^h's columns
	// in the same view: b_j = Σ_r O[r]·view(u_j)[r] = O_viewᵀ u_j with
	// O_view[r] = γ_r (O[r] − mean_r O)
	outView := make([]float32, len(out))
	for i := range dh {
		copy(outView[i*info.DModel:(i+1)*info.DModel], final.apply(out[i*info.DModel:(i+1)*info.DModel]))
	}
	emb, err := factorRows(w, models.EmbedTensor, in, [][]float32{val, q, k}, []float64{1, 1 / math.Sqrt(float64(dh)), 1})
	if err != nil {
		return nil, err
	}
	un, err := factorRows(w, u.Unembed, residualView{mode: models.LensRaw}, [][]float32{outView}, []float64{1})
	if err != nil {
		return nil, err
	}
	// the listed tokens' rows only, and their ids
	var ids []int32
	for id, ok := range keep {
		if ok {
			ids = append(ids, int32(id))
		}
	}
	compact := func(m []float32) []float32 {
		out := make([]float32, 0, len(ids)*dh)
		for _, id := range ids {
			out = append(out, m[int(id)*dh:(int(id)+1)*dh]...)
		}
		return out
	}
	pairs := func(a, b []float32) Circuit {
		a, b = compact(a), compact(b)
		conv := func(ps []pairScore) []TokenPair {
			out := make([]TokenPair, len(ps))
			for i, p := range ps {
				in, o := ids[p.i], ids[p.j]
				out[i] = TokenPair{In: in, InPiece: v.Printable(in), Out: o, OutPiece: v.Printable(o), Value: p.v}
			}
			return out
		}
		top, bottom := extremePairs(a, b, dh, o.Pairs)
		return Circuit{Top: conv(top), Bottom: conv(bottom)}
	}
	return &HeadParams{Head: h, KVHead: h / (info.NHead / info.NHeadKV),
		OV: pairs(emb[0], un[0]), QK: pairs(emb[1], emb[2])}, nil
}

// alongData is the Along ranking with the per-neuron numbers rankNeurons
// needs.
type alongData struct {
	result  *AlongResult
	cos     []float64
	contrib []float64 // nil without prompts
}

// computeAlong ranks the layer's neurons and heads by how much they write
// along o.Along's direction.
func computeAlong(w *models.Weights, e models.Engine, info *models.Info, t *paramTensors, dff int, o ParamsOptions) (*alongData, error) {
	src := o.Along
	hook := models.Hook{Kind: models.ResidPost, Layer: o.Layer}
	if o.AlongHook != "" {
		hs, err := models.ParseHook(o.AlongHook, info.NLayer)
		if err != nil {
			return nil, &InputError{Err: err}
		}
		if len(hs) != 1 {
			return nil, inputErr("--hook %q names %d hooks; give one, such as resid_post.%d", o.AlongHook, len(hs), o.Layer)
		}
		hook = hs[0]
	}
	res := &AlongResult{Source: src.Name, Kind: src.Kind, Hook: hook.Name()}
	var acts *pairActs
	var dir []float32
	if src.Kind == "pair" {
		if e == nil {
			return nil, inputErr("the prompt pair %q needs a model to run", src.Name)
		}
		var err error
		if acts, err = runAlongPair(e, info, t, hook, o); err != nil {
			return nil, err
		}
		dir = acts.dir
		res.Prompts, res.Pos = src.Prompts[:], acts.pos[:]
	} else {
		dir = src.At(hook)
		if dir == nil {
			return nil, inputErr("%s has no vector at %s: give --hook with one it has", src.Name, hook.Short())
		}
	}
	if len(dir) != info.DModel {
		return nil, inputErr("%s has %d values at %s but the model's d_model is %d: it was made for another model", src.Name, len(dir), hook.Short(), info.DModel)
	}
	res.Norm = norm64(dir)
	if res.Norm == 0 {
		return nil, inputErr("%s is a zero vector at %s: it has no direction to rank along", src.Name, hook.Short())
	}
	unit := make([]float32, len(dir))
	for i, x := range dir {
		unit[i] = float32(float64(x) / res.Norm)
	}

	// neurons: w_n·û and ‖w_n‖ from one pass over W_down
	_, dots, sq, err := columns(w, t.down, nil, unit)
	if err != nil {
		return nil, err
	}
	ad := &alongData{result: res, cos: make([]float64, dff)}
	for n := range dff {
		if sq[n] > 0 {
			ad.cos[n] = dots[n] / math.Sqrt(sq[n])
		}
	}
	var actA, actB []float64
	if acts != nil {
		if actA, actB, err = neuronActs(w, info, t, acts, dff); err != nil {
			return nil, err
		}
		ad.contrib = make([]float64, dff)
		var s float64
		for n := range dff {
			ad.contrib[n] = (actA[n] - actB[n]) * dots[n]
			s += ad.contrib[n]
		}
		m := diff.Dot(diff.SubTo(make([]float32, len(unit)), acts.mlpA, acts.mlpB), unit)
		res.MLPOut, res.NeuronSum = &m, &s
	}
	order := make([]int, dff)
	for i := range order {
		order[i] = i
	}
	key := func(n int) float64 {
		if ad.contrib != nil {
			return math.Abs(ad.contrib[n])
		}
		return math.Abs(ad.cos[n])
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmpDesc(key(a), key(b)) })
	for _, n := range order[:min(max(o.Rank, 1), dff)] {
		an := AlongNeuron{Index: n, Cos: ad.cos[n], Proj: dots[n]}
		if acts != nil {
			a, b, c := actA[n], actB[n], ad.contrib[n]
			an.ActA, an.ActB, an.Contribution = &a, &b, &c
		}
		res.Neurons = append(res.Neurons, an)
	}

	// heads: the projection of û on each head's write space
	if res.Heads, err = alongHeads(w, info, t, unit, acts, res); err != nil {
		return nil, err
	}
	if ad.contrib == nil {
		slices.SortStableFunc(res.Heads, func(a, b AlongHead) int { return cmpDesc(a.Cos, b.Cos) })
	} else {
		slices.SortStableFunc(res.Heads, func(a, b AlongHead) int { return cmpDesc(math.Abs(*a.Contribution), math.Abs(*b.Contribution)) })
	}
	res.Heads = res.Heads[:min(max(o.Rank, 1), len(res.Heads))]
	return ad, nil
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
