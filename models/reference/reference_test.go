package reference

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// formulaModel builds an untied model in memory whose weights come from val;
// the norm weights γ from gamma. Tensor ids: 0 token_embd, 1+10L..9+10L the
// layer tensors in the order attn_norm, q, k, v, o, ffn_norm, gate, up, down,
// 50 output_norm, 51 output.
func formulaModel(c Config, val func(k, i, j int) float32, gamma func(k, i int) float32) *Model {
	mat := func(k, out, in int) linear {
		l := linear{in: in, out: out, w: make([]float32, out*in)}
		for i := 0; i < out; i++ {
			for j := 0; j < in; j++ {
				l.w[i*in+j] = val(k, i, j)
			}
		}
		return l
	}
	norm := func(k int) []float32 {
		g := make([]float32, c.DModel)
		for i := range g {
			g[i] = gamma(k, i)
		}
		return g
	}
	m := &Model{Config: c, tokEmbd: mat(0, c.NVocab, c.DModel).w, outputNorm: norm(50), unembed: mat(51, c.NVocab, c.DModel)}
	for l := 0; l < c.NLayer; l++ {
		b := 1 + 10*l
		m.layers = append(m.layers, layer{
			attnNorm: norm(b),
			wq:       mat(b+1, c.NHead*c.DHead, c.DModel),
			wk:       mat(b+2, c.NHeadKV*c.DHead, c.DModel),
			wv:       mat(b+3, c.NHeadKV*c.DHead, c.DModel),
			wo:       mat(b+4, c.DModel, c.NHead*c.DHead),
			ffnNorm:  norm(b + 5),
			gate:     mat(b+6, c.DFF, c.DModel),
			up:       mat(b+7, c.DFF, c.DModel),
			down:     mat(b+8, c.DModel, c.DFF),
		})
	}
	return m
}

// randomModel is a formulaModel with weights drawn from N(0, 0.5²) and γ
// around 1.
func randomModel(c Config, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	return formulaModel(c,
		func(k, i, j int) float32 { return float32(rng.NormFloat64() * 0.5) },
		func(k, i int) float32 { return float32(1 + rng.NormFloat64()*0.1) })
}

var smallConfig = Config{NLayer: 3, DModel: 16, NHead: 4, NHeadKV: 2, DHead: 8, DFF: 24, NVocab: 11, RopeBase: 10000, NormEps: 1e-5}

func mustRun(t *testing.T, m *Model, tokens []int32) *Result {
	t.Helper()
	r, err := m.Run(tokens)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustGet(t *testing.T, r *Result, name string) [][]float32 {
	t.Helper()
	rows, ok := r.Get(name)
	if !ok {
		t.Fatalf("no hook %q; have %v", name, r.Names())
	}
	return rows
}

// TestHandModel compares a whole forward pass of a tiny model (2 layers,
// grouped-query attention with 4 query and 2 kv heads, 4 positions so RoPE
// turns at positions 1..3) with values computed independently by
// testdata/handmodel.py in float64.
func TestHandModel(t *testing.T) {
	c := Config{NLayer: 2, DModel: 6, NHead: 4, NHeadKV: 2, DHead: 4, DFF: 5, NVocab: 7, RopeBase: 10000, NormEps: 1e-5}
	m := formulaModel(c,
		func(k, i, j int) float32 { return float32((k*31+i*7+j*3)%13-6) / 8 },
		func(k, i int) float32 { return float32(1 + float64((k*5+i)%5-2)/10) })
	r := mustRun(t, m, []int32{1, 5, 2, 6})
	want := map[string][][]float32{
		"blocks.0.attn.hook_z": {
			{2.48179225, -1.36625752, 2.39095066, -1.45709911, 2.48179225, -1.36625752, 2.39095066, -1.45709911, 2.30010907, -1.5479407, 0.508712906, -0.0799405995, 2.30010907, -1.5479407, 0.508712906, -0.0799405995},
			{2.36409249, -1.49242995, 2.37338452, -1.48313791, 2.19522046, -1.67345831, 2.34818117, -1.5204976, 2.45273818, -1.41097364, 0.579314076, -0.289541115, 2.43142201, -1.43010245, 0.569453923, -0.260268325},
			{1.95407847, -1.4498208, 2.11635858, -1.28754069, -0.592450686, 2.15404196, -0.836301903, 1.91019074, -1.27117538, 1.81906518, -1.15037516, 0.117467123, -0.86875713, 1.47297796, -0.963462513, 0.0713635057},
			{0.778705832, 0.497114842, 0.642043192, 0.360452203, -1.09423043, 2.68553838, -1.32634044, 2.45342837, -0.5659284, 1.52596795, -0.886966072, -0.131697369, -0.426199325, 1.41313824, -0.823556435, -0.151658731},
		},
		"blocks.1.hook_attn_out": {
			{-1.00930031, 0.691154913, -2.83195244, 1.89807205, -1.21550845, 2.93870539},
			{-1.15035025, 0.712163698, -3.04012765, 1.81893711, -1.35966834, 2.88064216},
			{-0.443136539, -0.128313628, -1.10823025, 1.40878821, -0.539294859, 1.93760852},
			{0.336311733, -0.510680933, -0.257884262, 1.06218478, -0.506568983, 1.24643257},
		},
		"blocks.1.hook_mlp_out": {
			{-0.133403246, -0.0774856072, -0.369002652, -0.313085014, -0.604602058, -0.731720828},
			{-0.0224699418, -0.197767974, -0.276231681, -0.451529713, -0.52999342, -0.915275545},
			{-0.787124569, 0.00557960648, -1.09952897, -0.306824793, -1.41193337, 2.02441791},
			{-0.480305295, 0.247370391, -0.678333911, 0.0493417746, -0.876362527, 1.2841704},
		},
		"logits": {
			{0.874245645, -0.215875394, 1.22594762, 0.135826585, -0.689184253, -0.354581801, -0.00588012073},
			{0.899121751, -0.34225029, 1.31063773, 0.0692656894, -0.524541079, -0.514124626, 0.0921718154},
			{1.08578069, 0.598084976, 0.621015488, 0.133319771, 0.124037185, 0.151784342, -1.14953028},
			{0.851203936, 0.607470458, 0.489367598, 0.24563412, 0.925660533, -0.27495838, -0.993555685},
		},
	}
	for name, w := range want {
		// The Go side rounds every intermediate to float32 (relative 6e-8
		// each, γ like 1.1 included); through two layers that stays far below
		// 1e-5. A wrong convention (RoPE pairing, kv head mapping, norm)
		// moves these values by 1e-2 or more.
		if err := Compare(name, mustGet(t, r, name), w, 1e-5); err != nil {
			t.Error(err)
		}
	}
}

func TestRopePositionZeroIsIdentity(t *testing.T) {
	v := []float32{1, -2, 3.5, 4, 0.25, -6, 7, 8}
	got := rope(slices.Clone(v), 0, 4, 10000)
	// cos 0 = 1 and sin 0 = 0 exactly, so position 0 leaves every value as is.
	assertExact(t, "rope at position 0", got, v)
}

func TestRopeByHand(t *testing.T) {
	// Two heads of width 4, position 1, base 10000. Pair 0 of each head
	// turns by theta = 1 rad, pair 1 by 10000^(-2/4) = 0.01 rad. Values from
	//   x0*cos(θ) - x1*sin(θ), x0*sin(θ) + x1*cos(θ)
	// evaluated in float64 by hand (Python).
	got := rope([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 1, 4, 10000)
	want := []float64{
		-1.1426396637476532, 1.922075596544176, 2.9598506679133294, 4.029799501669161, // head 0
		-2.3473143795066798, 7.449168759248321, 6.919651336243324, 8.069598836672489, // head 1
	}
	for i := range want {
		// One float32 rounding of the result: relative 6e-8.
		if math.Abs(float64(got[i])-want[i]) > 1e-6*math.Abs(want[i]) {
			t.Errorf("rope[%d] = %.9g, want %.9g", i, got[i], want[i])
		}
	}
}

// TestRopeFactors checks that a factor divides its pair's angle, as
// ggml_rope_ext's freq_factors do: with factors {1, 2} (heads of width 4,
// base 10000), position 2 turns pair 0 by 2 rad, as plain RoPE at
// position 2, and pair 1 by 0.02/2 = 0.01 rad, as plain RoPE at position 1.
func TestRopeFactors(t *testing.T) {
	v := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	got := ropeFactors(slices.Clone(v), 2, 4, 10000, []float32{1, 2})
	at2, at1 := rope(slices.Clone(v), 2, 4, 10000), rope(slices.Clone(v), 1, 4, 10000)
	for h := 0; h < 8; h += 4 {
		want := []float32{at2[h], at2[h+1], at1[h+2], at1[h+3]}
		for i, w := range want {
			if math.Abs(float64(got[h+i]-w)) > 1e-6*math.Abs(float64(w)) {
				t.Errorf("rope with factors [%d] = %.9g, want %.9g", h+i, got[h+i], w)
			}
		}
	}
	// Factors of 1 are plain RoPE, bit for bit.
	assertExact(t, "rope with factors 1", ropeFactors(slices.Clone(v), 7, 4, 10000, []float32{1, 1}), rope(slices.Clone(v), 7, 4, 10000))
}

// TestRopeRelativePosition checks the property RoPE exists for: the score of
// a query at p and a key at s depends only on p - s.
func TestRopeRelativePosition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	q, k := make([]float32, 64), make([]float32, 64)
	for i := range q {
		q[i], k[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	score := func(p, s int) float64 {
		return diff.Dot(rope(slices.Clone(q), p, 64, 10000), rope(slices.Clone(k), s, 64, 10000))
	}
	for _, shift := range []int{1, 7, 100} {
		a, b := score(5, 2), score(5+shift, 2+shift)
		// Both sides are dot products of float32-rounded vectors of norm
		// about 8: agreement to 1e-5 absolute.
		if math.Abs(a-b) > 1e-5 {
			t.Errorf("score(5,2) = %g but score(%d,%d) = %g", a, 5+shift, 2+shift, b)
		}
	}
}

func TestRMSNormByHand(t *testing.T) {
	// x = (3, 4): mean(x²) = 12.5, sqrt = 3.5355339; γ = (1, 2).
	got := rmsNorm([]float32{3, 4}, []float32{1, 2}, 0)
	want := []float64{3 / math.Sqrt(12.5), 2 * 4 / math.Sqrt(12.5)}
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-6 {
			t.Errorf("rmsNorm[%d] = %g, want %g", i, got[i], want[i])
		}
	}
	// eps is added to mean(x²) inside the square root: x = 0 stays 0
	// instead of dividing by zero, and a tiny x is damped.
	got = rmsNorm([]float32{1e-3}, []float32{1}, 1e-6)
	if want := 1e-3 / math.Sqrt(1e-6+1e-6); math.Abs(float64(got[0])-want) > 1e-6 {
		t.Errorf("rmsNorm with eps = %g, want %g", got[0], want)
	}
}

// TestAttentionOneToken: with a single position the softmax is over one
// score and equals 1, so each head's z is exactly the V projection of its kv
// head, and query heads 2h and 2h+1 (group of 2) share kv head h.
func TestAttentionOneToken(t *testing.T) {
	m := randomModel(smallConfig, 1)
	c := m.Config
	r := mustRun(t, m, []int32{7})
	for l, ly := range m.layers {
		x := mustGet(t, r, hookName(l, "hook_resid_pre"))[0]
		v := ly.wv.apply(rmsNorm(x, ly.attnNorm, c.NormEps))
		z := mustGet(t, r, hookName(l, "attn.hook_z"))[0]
		for h := 0; h < c.NHead; h++ {
			kv := h / (c.NHead / c.NHeadKV)
			assertExact(t, fmt.Sprintf("blocks.%d.attn.hook_z head %d", l, h),
				z[h*c.DHead:(h+1)*c.DHead], v[kv*c.DHead:(kv+1)*c.DHead])
		}
	}
}

// TestCausal: changing the last token changes nothing at earlier positions,
// in any hook, and does change the last position.
func TestCausal(t *testing.T) {
	m := randomModel(smallConfig, 2)
	a := mustRun(t, m, []int32{1, 4, 9, 2})
	b := mustRun(t, m, []int32{1, 4, 9, 3})
	for _, name := range a.Names() {
		ra, rb := mustGet(t, a, name), mustGet(t, b, name)
		for p := 0; p < 3; p++ {
			assertExact(t, name, rb[p], ra[p])
		}
		if slices.Equal(ra[3], rb[3]) {
			t.Errorf("%s: last position unchanged by a different last token", name)
		}
	}
}

// TestResidualIdentities: the residual adds are float32 additions, so the
// identities hold exactly, not just within a tolerance.
func TestResidualIdentities(t *testing.T) {
	m := randomModel(smallConfig, 3)
	r := mustRun(t, m, []int32{1, 2, 3, 5, 8})
	checkResidualAdds(t, r, m.Config.NLayer)
	for l := 0; l+1 < m.Config.NLayer; l++ {
		post, next := mustGet(t, r, hookName(l, "hook_resid_post")), mustGet(t, r, hookName(l+1, "hook_resid_pre"))
		for p := range post {
			assertExact(t, "resid_pre of the next layer", next[p], post[p])
		}
	}
	// resid_pre of layer 0 is the embedding row of each token.
	pre := mustGet(t, r, "blocks.0.hook_resid_pre")
	for p, tok := range r.Tokens {
		d := m.Config.DModel
		assertExact(t, "blocks.0.hook_resid_pre", pre[p], m.tokEmbd[int(tok)*d:int(tok+1)*d])
	}
}

// checkResidualAdds checks, at every layer and position of r, that
// resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out
// exactly: the residual adds are float32 additions of a sequential-residual
// model.
func checkResidualAdds(t *testing.T, r *Result, nLayer int) {
	t.Helper()
	for l := 0; l < nLayer; l++ {
		pre, attn := mustGet(t, r, hookName(l, "hook_resid_pre")), mustGet(t, r, hookName(l, "hook_attn_out"))
		mid, mlp := mustGet(t, r, hookName(l, "hook_resid_mid")), mustGet(t, r, hookName(l, "hook_mlp_out"))
		post := mustGet(t, r, hookName(l, "hook_resid_post"))
		for p := range pre {
			for i := range pre[p] {
				if mid[p][i] != pre[p][i]+attn[p][i] {
					t.Fatalf("layer %d position %d [%d]: resid_mid %g != resid_pre + attn_out %g", l, p, i, mid[p][i], pre[p][i]+attn[p][i])
				}
				if post[p][i] != mid[p][i]+mlp[p][i] {
					t.Fatalf("layer %d position %d [%d]: resid_post %g != resid_mid + mlp_out %g", l, p, i, post[p][i], mid[p][i]+mlp[p][i])
				}
			}
		}
	}
}

// TestHookNamesAndWidths: the reference produces exactly the hooks that
// package models names, in models' order, with the documented widths.
func TestHookNamesAndWidths(t *testing.T) {
	m := randomModel(smallConfig, 4)
	c := m.Config
	r := mustRun(t, m, []int32{0, 10, 5})
	var want []string
	for l := 0; l < c.NLayer; l++ {
		for _, k := range models.LayerKinds {
			want = append(want, models.Hook{Kind: k, Layer: l}.Name())
		}
	}
	for _, k := range models.ModelKinds {
		want = append(want, models.Hook{Kind: k, Layer: -1}.Name())
	}
	if got := r.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v\nwant %v", got, want)
	}
	for _, name := range r.Names() {
		width := c.DModel
		switch {
		case strings.HasSuffix(name, "attn.hook_z"):
			width = c.NHead * c.DHead
		case name == "logits":
			width = c.NVocab
		}
		rows := mustGet(t, r, name)
		if len(rows) != 3 {
			t.Errorf("%s: %d positions, want 3", name, len(rows))
		}
		for p, row := range rows {
			if len(row) != width {
				t.Errorf("%s position %d: width %d, want %d", name, p, len(row), width)
			}
		}
	}
	if _, ok := r.Get("blocks.99.hook_resid_pre"); ok {
		t.Error("Get found a hook for a layer that does not exist")
	}
}

func TestRunRejectsBadTokens(t *testing.T) {
	m := randomModel(smallConfig, 5)
	for _, tokens := range [][]int32{nil, {1, 11}, {-1}} {
		if _, err := m.Run(tokens); err == nil {
			t.Errorf("Run(%v): no error", tokens)
		}
	}
}

func hookName(layer int, hook string) string { return fmt.Sprintf("blocks.%d.%s", layer, hook) }
