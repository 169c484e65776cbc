package analysis

import (
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// These tests check every projection of params against a direct float64
// computation from the whole tensors (models.File.ReadTensorFloat32),
// written independently of the blockwise code: column N of W_down taken
// from the full matrix, logits as plain sums, circuits as full n_vocab ×
// n_vocab matrices on the 512-token stories260K.

// paramsModel is a model file with its full tensors for direct checks.
type paramsModel struct {
	path  string
	f     *models.File
	info  *models.Info
	cache map[string][]float32
}

func openParamsModel(t *testing.T, path string) *paramsModel {
	t.Helper()
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.Info()
	if err != nil {
		t.Fatal(err)
	}
	return &paramsModel{path: path, f: f, info: info, cache: map[string][]float32{}}
}

func (m *paramsModel) tensor(t *testing.T, name string) []float32 {
	t.Helper()
	if v, ok := m.cache[name]; ok {
		return v
	}
	v, err := m.f.ReadTensorFloat32(name)
	if err != nil {
		t.Fatal(err)
	}
	m.cache[name] = v
	return v
}

// unembedDirect returns W_U·view(v) in float64, view as in params: raw, or
// γ⊙(v − mean v) with a LayerNorm, γ⊙v with an RMSNorm.
func (m *paramsModel) unembedDirect(t *testing.T, v []float64, mode models.LensMode) []float64 {
	d := m.info.DModel
	x := slices.Clone(v)
	if mode == models.LensGamma {
		g := m.tensor(t, "output_norm.weight")
		mean := 0.0
		if m.info.LayerNorm {
			for _, a := range x {
				mean += a
			}
			mean /= float64(d)
		}
		for i := range x {
			x[i] = (x[i] - mean) * float64(g[i])
		}
	}
	name := "output.weight"
	if _, ok := m.f.Tensor(name); !ok {
		name = "token_embd.weight"
	}
	u := m.tensor(t, name)
	out := make([]float64, len(u)/d)
	for j := range out {
		for i := range d {
			out[j] += float64(u[j*d+i]) * x[i]
		}
	}
	return out
}

// checkProjection checks that got lists the k largest (or, desc false,
// smallest) entries of want, in order, with want's values. Values agree
// to 1e-5 of the largest |value|: both sides sum float32 products in
// float64, in different orders, and params rounds to float32 once.
func checkProjection(t *testing.T, what string, got []LensToken, want []float64, desc bool) {
	t.Helper()
	idx := make([]int, len(want))
	scale := 0.0
	for i := range idx {
		idx[i] = i
		scale = max(scale, math.Abs(want[i]))
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if desc {
			return want[idx[a]] > want[idx[b]]
		}
		return want[idx[a]] < want[idx[b]]
	})
	tol := 1e-5 * scale
	for r, g := range got {
		w := idx[r]
		if math.Abs(g.Value-want[g.ID]) > tol {
			t.Errorf("%s #%d: token %d value %g, direct %g", what, r, g.ID, g.Value, want[g.ID])
		}
		// the rank-r entry must be token w, unless the two are tied
		// within the tolerance
		if int(g.ID) != w && math.Abs(want[g.ID]-want[w]) > tol {
			t.Errorf("%s #%d: token %d (%g), direct computation ranks token %d (%g) there", what, r, g.ID, g.Value, w, want[w])
		}
	}
	if len(got) == 0 {
		t.Errorf("%s: no tokens", what)
	}
}

func openVocab(t *testing.T, f *models.File) models.Vocab {
	t.Helper()
	v, err := reference.NewVocab(f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// synthParams writes a small synthetic model of arch to a temp dir.
func synthParams(t *testing.T, arch string, typ models.GGMLType, nHead, nKV int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), arch+".gguf")
	spec := models.SynthSpec{Arch: arch, NLayer: 2, DModel: 64, NHead: nHead, NHeadKV: nKV, DFF: 96, NCtx: 64, Type: typ, Seed: 7, Untied: arch == "gptneox"}
	if err := models.WriteSynthetic(p, spec); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParamsNeurons(t *testing.T) {
	cases := []struct {
		name  string
		path  func(t *testing.T) string
		layer int
	}{
		{"stories260K F32", func(t *testing.T) string { return testmodels.Path(t, testmodels.Stories260K) }, 3},
		{"TinyStories Q8_0", func(t *testing.T) string { return testmodels.Path(t, testmodels.TinyStories656KQ8) }, 1},
		{"synthetic gpt2 F16", func(t *testing.T) string { return synthParams(t, "gpt2", models.F16, 4, 4) }, 1},
		{"synthetic gptneox F32", func(t *testing.T) string { return synthParams(t, "gptneox", models.F32, 4, 4) }, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path(t)
			m := openParamsModel(t, path)
			w, err := models.OpenWeights(path)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			v := openVocab(t, m.f)
			p := "blk." + itoa(c.layer) + "."
			down := m.tensor(t, p+"ffn_down.weight")
			up := m.tensor(t, p+"ffn_up.weight")
			d := m.info.DModel
			dff := len(down) / d
			neurons := []int{0, dff / 2, dff - 1}
			for _, mode := range []models.LensMode{models.LensRaw, models.LensGamma} {
				r, err := Params(w, v, nil, ParamsOptions{Layer: c.layer, Neurons: neurons, K: 7, Pairs: 1, Lens: mode, AllTokens: true})
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Neurons) != len(neurons) {
					t.Fatalf("%d neurons, want %d", len(r.Neurons), len(neurons))
				}
				for i, n := range neurons {
					np := r.Neurons[i]
					if np.Index != n {
						t.Fatalf("neuron %d reported as %d", n, np.Index)
					}
					wcol := make([]float64, d)
					var nn float64
					for rr := range d {
						wcol[rr] = float64(down[rr*dff+n])
						nn += wcol[rr] * wcol[rr]
					}
					if math.Abs(np.WriteNorm-math.Sqrt(nn)) > 1e-9*math.Sqrt(nn) {
						t.Errorf("neuron %d: write norm %g, direct %g", n, np.WriteNorm, math.Sqrt(nn))
					}
					lw := m.unembedDirect(t, wcol, mode)
					checkProjection(t, mode.String()+" write top", np.Write.Top, lw, true)
					checkProjection(t, mode.String()+" write bottom", np.Write.Bottom, lw, false)
					urow := make([]float64, d)
					for i := range d {
						urow[i] = float64(up[n*d+i])
					}
					lu := m.unembedDirect(t, urow, mode)
					checkProjection(t, mode.String()+" up top", np.Up.Top, lu, true)
					if m.info.LayerNorm {
						if np.Gate != nil || np.UpBias == nil {
							t.Errorf("%s: gate %v, up bias %v: want no gate and a bias", m.info.Arch, np.Gate, np.UpBias)
						} else if b := m.tensor(t, p+"ffn_up.bias"); *np.UpBias != float64(b[n]) {
							t.Errorf("up bias %g, file %g", *np.UpBias, b[n])
						}
					} else {
						if np.Gate == nil {
							t.Fatal("no gate projection for a gated MLP")
						}
						gate := m.tensor(t, p+"ffn_gate.weight")
						grow := make([]float64, d)
						for i := range d {
							grow[i] = float64(gate[n*d+i])
						}
						checkProjection(t, mode.String()+" gate bottom", np.Gate.Bottom, m.unembedDirect(t, grow, mode), false)
					}
				}
			}
		})
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

// TestTopPairsExact checks the pruned search (both ends of one pass) against sorting every pair,
// on factors whose norms vary (so the pruning cuts) and on factors of
// equal norms (so it cannot), for both signs.
func TestTopPairsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, spread := range []float64{0, 3} {
		const na, nb, r, k = 300, 257, 8, 25
		gen := func(n int) []float32 {
			m := make([]float32, n*r)
			for i := range n {
				s := math.Exp(spread * rng.NormFloat64())
				for j := range r {
					m[i*r+j] = float32(s * rng.NormFloat64())
				}
			}
			return m
		}
		a, b := gen(na), gen(nb)
		for _, sign := range []float64{1, -1} {
			var all []pairScore
			for i := range na {
				for j := range nb {
					var s float64
					for c := range r {
						s += float64(a[i*r+c]) * float64(b[j*r+c])
					}
					all = append(all, pairScore{int32(i), int32(j), sign * s})
				}
			}
			sort.Slice(all, func(x, y int) bool { return pairBefore(all[x], all[y]) })
			top, bottom := extremePairs(a, b, r, k)
			got := top
			if sign < 0 {
				// bottom lists values ascending; compare negated
				got = nil
				for _, p := range bottom {
					got = append(got, pairScore{p.i, p.j, -p.v})
				}
			}
			if len(got) != k {
				t.Fatalf("spread %g sign %g: %d pairs, want %d", spread, sign, len(got), k)
			}
			for i := range got {
				if got[i].i != all[i].i || got[i].j != all[i].j || math.Abs(got[i].v-all[i].v) > 1e-9*math.Abs(all[i].v) {
					t.Errorf("spread %g sign %g #%d: got (%d,%d) %g, want (%d,%d) %g", spread, sign, i, got[i].i, got[i].j, got[i].v, all[i].i, all[i].j, all[i].v)
				}
			}
		}
	}
}

// TestParamsHeadCircuits builds the full OV and QK matrices of heads of
// stories260K (512 tokens: 512 × 512) in float64 and checks params' pairs
// against them, for a head that shares its kv head (GQA 8:4).
func TestParamsHeadCircuits(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	m := openParamsModel(t, path)
	w, err := models.OpenWeights(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v := openVocab(t, m.f)
	const layer, head = 2, 5
	for _, mode := range []models.LensMode{models.LensRaw, models.LensGamma} {
		r, err := Params(w, v, nil, ParamsOptions{Layer: layer, Heads: []int{head}, K: 1, Pairs: 12, Lens: mode, AllTokens: true})
		if err != nil {
			t.Fatal(err)
		}
		hp := r.Heads[0]
		nh, nkv, dh, d := m.info.NHead, m.info.NHeadKV, m.info.DHead, m.info.DModel
		g := head / (nh / nkv)
		if hp.KVHead != g {
			t.Fatalf("kv head %d, want %d", hp.KVHead, g)
		}
		p := "blk.2."
		wq, wk, wv, wo := m.tensor(t, p+"attn_q.weight"), m.tensor(t, p+"attn_k.weight"), m.tensor(t, p+"attn_v.weight"), m.tensor(t, p+"attn_output.weight")
		emb := m.tensor(t, "token_embd.weight")
		an := m.tensor(t, p+"attn_norm.weight")
		nv := len(emb) / d
		e := func(i int) []float64 {
			x := make([]float64, d)
			for c := range d {
				x[c] = float64(emb[i*d+c])
				if mode == models.LensGamma {
					x[c] *= float64(an[c])
				}
			}
			return x
		}
		proj := func(wm []float32, row0 int, x []float64) []float64 {
			out := make([]float64, dh)
			for a := range dh {
				for c := range d {
					out[a] += float64(wm[(row0+a)*d+c]) * x[c]
				}
			}
			return out
		}
		// OV: logits of W_O^h W_V^g e_i for every i
		ov := make([][]float64, nv)
		qk := make([][]float64, nv)
		ks := make([][]float64, nv)
		for i := range nv {
			ks[i] = proj(wk, g*dh, e(i))
		}
		for i := range nv {
			vi := proj(wv, g*dh, e(i))
			y := make([]float64, d)
			for rr := range d {
				for a := range dh {
					y[rr] += float64(wo[rr*nh*dh+head*dh+a]) * vi[a]
				}
			}
			ov[i] = m.unembedDirect(t, y, mode)
			qi := proj(wq, head*dh, e(i))
			qk[i] = make([]float64, nv)
			for j := range nv {
				for a := range dh {
					qk[i][j] += qi[a] * ks[j][a]
				}
				qk[i][j] /= math.Sqrt(float64(dh))
			}
		}
		check := func(what string, got []TokenPair, full [][]float64, desc bool) {
			type e struct {
				i, j int
				v    float64
			}
			var all []e
			scale := 0.0
			for i := range full {
				for j, x := range full[i] {
					all = append(all, e{i, j, x})
					scale = max(scale, math.Abs(x))
				}
			}
			sort.SliceStable(all, func(a, b int) bool {
				if desc {
					return all[a].v > all[b].v
				}
				return all[a].v < all[b].v
			})
			tol := 1e-5 * scale
			if len(got) != 12 {
				t.Fatalf("%s: %d pairs, want 12", what, len(got))
			}
			for r, p := range got {
				if math.Abs(p.Value-full[p.In][p.Out]) > tol {
					t.Errorf("%s #%d: (%d,%d) %g, direct %g", what, r, p.In, p.Out, p.Value, full[p.In][p.Out])
				}
				if (int(p.In) != all[r].i || int(p.Out) != all[r].j) && math.Abs(p.Value-all[r].v) > tol {
					t.Errorf("%s #%d: (%d,%d) %g, direct ranks (%d,%d) %g there", what, r, p.In, p.Out, p.Value, all[r].i, all[r].j, all[r].v)
				}
			}
		}
		check(mode.String()+" OV top", hp.OV.Top, ov, true)
		check(mode.String()+" OV bottom", hp.OV.Bottom, ov, false)
		check(mode.String()+" QK top", hp.QK.Top, qk, true)
		check(mode.String()+" QK bottom", hp.QK.Bottom, qk, false)
	}
}

// TestParamsHeadFusedQKV checks the pairs of a gpt2 head (fused QKV,
// LayerNorm) against a direct computation of each reported entry, and
// that the top entry is at least every entry of a sample of pairs.
func TestParamsHeadFusedQKV(t *testing.T) {
	for _, arch := range []string{"gpt2", "gptneox"} {
		t.Run(arch, func(t *testing.T) {
			path := synthParams(t, arch, models.F32, 4, 4)
			m := openParamsModel(t, path)
			w, err := models.OpenWeights(path)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			v := openVocab(t, m.f)
			const head = 3
			r, err := Params(w, v, nil, ParamsOptions{Layer: 1, Heads: []int{head}, K: 1, Pairs: 5, Lens: models.LensGamma, AllTokens: true})
			if err != nil {
				t.Fatal(err)
			}
			d, dh := m.info.DModel, m.info.DHead
			qkv := m.tensor(t, "blk.1.attn_qkv.weight")
			wo := m.tensor(t, "blk.1.attn_output.weight")
			an := m.tensor(t, "blk.1.attn_norm.weight")
			emb := m.tensor(t, "token_embd.weight")
			e := func(i int32) []float64 { // centred, times γ
				x := make([]float64, d)
				mean := 0.0
				for c := range d {
					mean += float64(emb[int(i)*d+c])
				}
				mean /= float64(d)
				for c := range d {
					x[c] = (float64(emb[int(i)*d+c]) - mean) * float64(an[c])
				}
				return x
			}
			proj := func(row0 int, x []float64) []float64 {
				out := make([]float64, dh)
				for a := range dh {
					for c := range d {
						out[a] += float64(qkv[(row0+a)*d+c]) * x[c]
					}
				}
				return out
			}
			ovAt := func(i, j int32) float64 {
				vi := proj(2*d+head*dh, e(i))
				y := make([]float64, d)
				for rr := range d {
					for a := range dh {
						y[rr] += float64(wo[rr*d+head*dh+a]) * vi[a]
					}
				}
				return m.unembedDirect(t, y, models.LensGamma)[j]
			}
			qkAt := func(i, j int32) float64 {
				q, k := proj(head*dh, e(i)), proj(d+head*dh, e(j))
				var s float64
				for a := range dh {
					s += q[a] * k[a]
				}
				return s / math.Sqrt(float64(dh))
			}
			hp := r.Heads[0]
			for _, c := range []struct {
				what string
				ps   []TokenPair
				at   func(i, j int32) float64
			}{{"OV", hp.OV.Top, ovAt}, {"OV bottom", hp.OV.Bottom, ovAt}, {"QK", hp.QK.Top, qkAt}, {"QK bottom", hp.QK.Bottom, qkAt}} {
				for _, p := range c.ps[:2] {
					want := c.at(p.In, p.Out)
					if math.Abs(p.Value-want) > 1e-5*math.Abs(want)+1e-9 {
						t.Errorf("%s (%d,%d): %g, direct %g", c.what, p.In, p.Out, p.Value, want)
					}
				}
			}
			// QK's top entry is the largest among random pairs
			rng := rand.New(rand.NewPCG(3, 4))
			nv := int32(v.NVocab())
			for range 20 {
				i, j := rng.Int32N(nv), rng.Int32N(nv)
				if x := qkAt(i, j); x > hp.QK.Top[0].Value+1e-6 {
					t.Errorf("QK (%d,%d) = %g exceeds the reported top %g", i, j, x, hp.QK.Top[0].Value)
				}
			}
		})
	}
}

// TestParamsAlongPair runs a prompt pair and checks that the neurons' and
// heads' contributions sum to the engine's mlp_out and attn_out
// differences along the direction, and the cosines against a direct
// computation (heads through a least-squares projection, not the
// eigen-decomposition params uses).
func TestParamsAlongPair(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	forEngines(t, path, func(t *testing.T, e models.Engine) {
		m := openParamsModel(t, path)
		w, err := models.OpenWeights(path)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		src, err := LoadVecSource("Once upon a time there was a girl. She|Once upon a time there was a boy. He", VecLoadOptions{CvecOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		const layer = 3
		r, err := Params(w, e, e, ParamsOptions{Layer: layer, Along: src, Pos: RowSpec{Indices: []int{-1}}, Rank: 1000, K: 3, TopNeurons: 2, By: "act", Lens: models.LensRaw})
		if err != nil {
			t.Fatal(err)
		}
		a := r.Along
		dff := len(a.Neurons)
		if dff != m.info.DFF {
			t.Fatalf("%d neurons ranked, want all %d", dff, m.info.DFF)
		}
		// the sums: silu and the norms are computed in float64 from the
		// captured float32 rows, so they agree with the engine's float32
		// MLP to about 1e-5 of the sum of |contributions|
		var absN float64
		for _, n := range a.Neurons {
			absN += math.Abs(*n.Contribution)
		}
		if math.Abs(*a.NeuronSum-*a.MLPOut) > 1e-4*absN {
			t.Errorf("neurons sum to %g along v̂, mlp_out differs by %g (Σ|c| = %g)", *a.NeuronSum, *a.MLPOut, absN)
		}
		var absH float64
		for _, h := range a.Heads {
			absH += math.Abs(*h.Contribution)
		}
		if math.Abs(*a.HeadSum-*a.AttnOut) > 1e-4*absH {
			t.Errorf("heads sum to %g along v̂, attn_out differs by %g (Σ|c| = %g)", *a.HeadSum, *a.AttnOut, absH)
		}
		if absN == 0 || absH == 0 {
			t.Fatal("no contribution at all: the prompts do not differ")
		}
		// ranked by |contribution|
		for i := 1; i < len(a.Neurons); i++ {
			if math.Abs(*a.Neurons[i].Contribution) > math.Abs(*a.Neurons[i-1].Contribution) {
				t.Fatalf("neurons not ranked by |contribution| at %d", i)
			}
		}
		if r.Neurons[0].Index != a.Neurons[0].Index {
			t.Errorf("--top by act projects neuron %d, the ranking's first is %d", r.Neurons[0].Index, a.Neurons[0].Index)
		}
		// direction: the engine's resid_post difference
		run, err := e.NewRunner(nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer run.Close()
		var ids [][]int32
		for _, s := range src.Prompts {
			x, err := e.Tokenize(s, models.TokenizeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, x)
		}
		h := models.Hook{Kind: models.ResidPost, Layer: layer}
		cs, err := run.Run(ids, []models.Hook{h})
		if err != nil {
			t.Fatal(err)
		}
		d := m.info.DModel
		ra, _ := cs[0].At(h)
		rb, _ := cs[1].At(h)
		dir := make([]float64, d)
		var dn float64
		for i := range d {
			dir[i] = float64(ra.Row(len(ids[0]) - 1)[i]) - float64(rb.Row(len(ids[1]) - 1)[i])
			dn += dir[i] * dir[i]
		}
		dn = math.Sqrt(dn)
		if math.Abs(a.Norm-dn) > 1e-5*dn {
			t.Errorf("direction norm %g, direct %g", a.Norm, dn)
		}
		down := m.tensor(t, "blk.3.ffn_down.weight")
		for _, n := range a.Neurons[:10] {
			var dot, nn float64
			for rr := range d {
				x := float64(down[rr*dff+n.Index])
				dot += x * dir[rr] / dn
				nn += x * x
			}
			if math.Abs(n.Cos-dot/math.Sqrt(nn)) > 1e-5 {
				t.Errorf("neuron %d: cos %g, direct %g", n.Index, n.Cos, dot/math.Sqrt(nn))
			}
		}
		wo := m.tensor(t, "blk.3.attn_output.weight")
		nh, dh := m.info.NHead, m.info.DHead
		for _, hd := range a.Heads {
			o := mat.NewDense(d, dh, nil)
			for rr := range d {
				for c := range dh {
					o.Set(rr, c, float64(wo[rr*nh*dh+hd.Head*dh+c]))
				}
			}
			u := mat.NewVecDense(d, nil)
			for i := range d {
				u.SetVec(i, dir[i]/dn)
			}
			var coef mat.VecDense
			if err := coef.SolveVec(o, u); err != nil { // least squares (QR)
				t.Fatal(err)
			}
			var pu mat.VecDense
			pu.MulVec(o, &coef)
			if want := mat.Norm(&pu, 2); math.Abs(hd.Cos-want) > 1e-6 {
				t.Errorf("head %d: cos %g, least squares %g", hd.Head, hd.Cos, want)
			}
		}
	})
}

// TestParamsAlongGELU checks the contribution sums on gpt2 and gptneox
// (the parallel residual: the MLP reads resid_pre). llama.cpp's GELU
// rounds through half precision (the reference does as ggml's CPU does),
// params computes it in float64: about 1e-3 relative per activation, so
// the sums agree to 1e-2 of Σ|contribution|.
func TestParamsAlongGELU(t *testing.T) {
	for _, arch := range []string{"gpt2", "gptneox"} {
		t.Run(arch, func(t *testing.T) {
			path := synthParams(t, arch, models.F32, 4, 4)
			e := openReference(t, path)
			w, err := models.OpenWeights(path)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			src, err := LoadVecSource("the cat sat on the mat|a dog ran in the park", VecLoadOptions{CvecOffset: -1})
			if err != nil {
				t.Fatal(err)
			}
			r, err := Params(w, e, e, ParamsOptions{Layer: 1, Along: src, Pos: RowSpec{Indices: []int{-1}}, Rank: 1000, K: 3, Lens: models.LensRaw})
			if err != nil {
				t.Fatal(err)
			}
			a := r.Along
			var absN float64
			for _, n := range a.Neurons {
				absN += math.Abs(*n.Contribution)
			}
			if absN == 0 || math.Abs(*a.NeuronSum-*a.MLPOut) > 1e-2*absN {
				t.Errorf("neurons sum to %g, mlp_out %g (Σ|c| = %g)", *a.NeuronSum, *a.MLPOut, absN)
			}
			var absH float64
			for _, h := range a.Heads {
				absH += math.Abs(*h.Contribution)
			}
			if absH == 0 || math.Abs(*a.HeadSum-*a.AttnOut) > 1e-4*absH {
				t.Errorf("heads sum to %g, attn_out %g (Σ|c| = %g)", *a.HeadSum, *a.AttnOut, absH)
			}
		})
	}
}

func TestParamsErrors(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	m := openParamsModel(t, path)
	w, err := models.OpenWeights(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v := openVocab(t, m.f)
	for _, c := range []struct {
		name string
		o    ParamsOptions
	}{
		{"layer", ParamsOptions{Layer: 5, Neurons: []int{0}, K: 1, Pairs: 1, Lens: models.LensRaw}},
		{"neuron", ParamsOptions{Layer: 0, Neurons: []int{172}, K: 1, Pairs: 1, Lens: models.LensRaw}},
		{"head", ParamsOptions{Layer: 0, Heads: []int{8}, K: 1, Pairs: 1, Lens: models.LensRaw}},
		{"norm mode", ParamsOptions{Layer: 0, Neurons: []int{0}, K: 1, Pairs: 1, Lens: models.LensNorm}},
		{"cos without along", ParamsOptions{Layer: 0, TopNeurons: 3, By: "cos", K: 1, Pairs: 1, Lens: models.LensRaw}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Params(w, v, nil, c.o)
			var ie *InputError
			if err == nil || !errors.As(err, &ie) {
				t.Fatalf("got %v, want an InputError", err)
			}
		})
	}
}

// TestParamsTokenFilter: by default byte-fallback and control tokens are
// not listed (stories260K's 256 byte tokens share untrained rows), and
// the lists are the direct computation's over the normal tokens.
func TestParamsTokenFilter(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	m := openParamsModel(t, path)
	w, err := models.OpenWeights(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v := openVocab(t, m.f)
	r, err := Params(w, v, nil, ParamsOptions{Layer: 0, Neurons: []int{5}, Heads: []int{5}, K: 20, Pairs: 20, Lens: models.LensRaw})
	if err != nil {
		t.Fatal(err)
	}
	normal := func(id int32) bool { return v.Kind(id) == models.KindNormal || v.Kind(id) == models.KindUser }
	var listed []int32
	for _, p := range slices.Concat(r.Heads[0].OV.Top, r.Heads[0].OV.Bottom, r.Heads[0].QK.Top) {
		listed = append(listed, p.In, p.Out)
	}
	for _, tk := range slices.Concat(r.Neurons[0].Write.Top, r.Neurons[0].Write.Bottom) {
		listed = append(listed, tk.ID)
	}
	for _, id := range listed {
		if !normal(id) {
			t.Fatalf("token %d (%s, %s) is listed", id, v.Printable(id), v.Kind(id))
		}
	}
	down := m.tensor(t, "blk.0.ffn_down.weight")
	d := m.info.DModel
	col := make([]float64, d)
	for i := range d {
		col[i] = float64(down[i*(len(down)/d)+5])
	}
	full := m.unembedDirect(t, col, models.LensRaw)
	for id := range full {
		if !normal(int32(id)) {
			full[id] = math.Inf(-1) // never ranked first
		}
	}
	checkProjection(t, "filtered write top", r.Neurons[0].Write.Top, full, true)
}
