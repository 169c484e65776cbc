package llamacpp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The patching prompts: stories260K says " she" after the first (p=0.57)
// and " he" after the second (p=0.52); the prompts have the same 17 tokens
// but for "girl"/"boy" at position 11.
const (
	patchClean   = "Once upon a time, there was a little girl. One day,"
	patchCorrupt = "Once upon a time, there was a little boy. One day,"
)

func patchTokens(t testing.TB, m *Model) (clean, corrupt []int32) {
	t.Helper()
	var err error
	if clean, err = m.Tokenize(patchClean, TokenizeOptions{}); err != nil {
		t.Fatal(err)
	}
	if corrupt, err = m.Tokenize(patchCorrupt, TokenizeOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(clean) != len(corrupt) {
		t.Fatalf("the patching prompts have %d and %d tokens, want equal counts", len(clean), len(corrupt))
	}
	return clean, corrupt
}

// layerHooks returns kind at every layer of m, for each kind.
func layerHooks(m *Model, kinds ...models.Kind) []models.Hook {
	var hs []models.Hook
	for l := range m.NLayer() {
		for _, k := range kinds {
			hs = append(hs, models.Hook{Kind: k, Layer: l})
		}
	}
	return hs
}

var logitsHook = models.Hook{Kind: models.Logits, Layer: -1}

// sameBits reports the first element where got and want differ in their
// bits, or -1.
func sameBits(got, want []float32) int {
	if len(got) != len(want) {
		return 0
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			return i
		}
	}
	return -1
}

func requireBits(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if i := sameBits(got, want); i >= 0 {
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
		}
		t.Fatalf("%s: differs at [%d]: got %.9g, want %.9g (relative L2 %.3g over the whole)", what, i, got[i], want[i], reference.RelL2(got, want))
	}
}

// patchParams are the context parameters of the patching tests: one
// thread, as ggml's spinning threads slow a tiny model down on a busy
// machine (the results are the same with any count).
func patchParams(nSeq int) ContextParams { return ContextParams{Threads: 1, NSeqMax: nSeq} }

// fastTol is the tolerance of the fast patching path against the plain
// one, relative L2 per logit row: see TestPatchFastMatchesPlain.
const fastTol = 1e-5

// requireClose checks that got is within fastTol of want.
func requireClose(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if e := reference.RelL2(got, want); !(e <= fastTol) {
		t.Fatalf("%s: relative L2 %.3g, want at most %g", what, e, fastTol)
	}
}

// runCaches runs seqs on a single-sequence context: every sequence is
// decoded alone with the same batch shapes, which is what bit-identical
// comparisons need.
func runCaches(t testing.TB, m *Model, seqs [][]int32, o RunOptions) []*models.Cache {
	t.Helper()
	c, err := m.NewContext(patchParams(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return runOn(t, c, seqs, o)
}

func runOn(t testing.TB, c *Context, seqs [][]int32, o RunOptions) []*models.Cache {
	t.Helper()
	caches, err := c.Run(seqs, o)
	if err != nil {
		t.Fatal(err)
	}
	return caches
}

var patchKinds = []models.Kind{models.ResidPre, models.Z, models.AttnOut, models.ResidMid, models.MLPOut, models.ResidPost}

// TestPatchCleanIntoClean checks the first sanity check of every patching
// experiment: writing the clean activation into the clean run changes
// nothing, to the bit (the node gets the same float32 values it had), for
// every kind, one position or all, first and last layer; and a hook that is
// captured and patched returns the patched (here: the same) rows.
func TestPatchCleanIntoClean(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	clean, _ := patchTokens(t, m)
	n := len(clean)
	hooks := append(layerHooks(m, patchKinds...), logitsHook)
	c, err := m.NewContext(patchParams(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := runOn(t, c, [][]int32{clean}, RunOptions{Hooks: hooks})[0]
	for _, k := range patchKinds {
		for _, l := range []int{0, m.NLayer() - 1} {
			for _, pos := range [][]int{nil, {0}, {11}, {n - 1}} {
				h := models.Hook{Kind: k, Layer: l}
				t.Run(fmt.Sprintf("%s/%v", h.Short(), pos), func(t *testing.T) {
					p := PatchFrom(get(t, want, h), pos...)
					got := runOn(t, c, [][]int32{clean}, RunOptions{Hooks: hooks, Patches: [][]Patch{{p}}})[0]
					for _, hh := range hooks {
						requireBits(t, hh.Name(), get(t, got, hh).Data, get(t, want, hh).Data)
					}
				})
			}
		}
	}
}

// TestPatchLastResidPost checks that writing the clean resid_post of the
// last layer at the last position into the corrupt run gives the clean
// logits at that position, to the bit (only the final norm and W_U, row by
// row, come after it), and leaves the other positions' logits those of the
// corrupt run. It checks Run with Patches and the plain path of
// Context.Patch to the bit, and the fast path (prefix reuse, several
// variants per decode) within the tolerance of TestPatchFastMatchesPlain.
func TestPatchLastResidPost(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	clean, corrupt := patchTokens(t, m)
	n, nv := len(clean), m.NVocab()
	h := models.Hook{Kind: models.ResidPost, Layer: m.NLayer() - 1}
	cs := runCaches(t, m, [][]int32{clean, corrupt}, RunOptions{Hooks: []models.Hook{h, logitsHook}})
	cleanLg, corruptLg := get(t, cs[0], logitsHook), get(t, cs[1], logitsHook)
	p := PatchFrom(get(t, cs[0], h), n-1)

	got := get(t, runCaches(t, m, [][]int32{corrupt}, RunOptions{Hooks: []models.Hook{logitsHook}, Patches: [][]Patch{{p}}})[0], logitsHook)
	requireBits(t, "Run: patched last position", got.Row(n-1), cleanLg.Row(n-1))
	requireBits(t, "Run: positions before", got.Data[:(n-1)*nv], corruptLg.Data[:(n-1)*nv])
	if sameBits(cleanLg.Row(n-1), corruptLg.Row(n-1)) < 0 {
		t.Fatal("clean and corrupt logits are equal: the test proves nothing")
	}

	for _, plain := range []bool{true, false} {
		c, err := m.NewContext(patchParams(4))
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Patch(corrupt, [][]Patch{{p}, nil, {p}}, PatchOptions{Plain: plain, Logits: []int{n - 2, n - 1}})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("Patch(plain=%v)", plain)
		check := requireBits
		if !plain {
			check = requireClose
		}
		requireBits(t, what+": base", res.Base, corruptLg.Data[(n-2)*nv:])
		for _, v := range []int{0, 2} {
			check(t, what+": patched last position", res.Variants[v][nv:], cleanLg.Row(n-1))
			check(t, what+": position before", res.Variants[v][:nv], corruptLg.Row(n-2))
		}
		check(t, what+": unpatched variant", res.Variants[1], corruptLg.Data[(n-2)*nv:])
	}
}

// TestPatchEmbeddingsRecoverClean checks that writing the clean resid_pre
// of layer 0 (the token embeddings) at every position into the corrupt run
// gives the clean run, every hook and every logit to the bit: the rest of
// the computation is the same float32 arithmetic on the same values.
func TestPatchEmbeddingsRecoverClean(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	clean, corrupt := patchTokens(t, m)
	hooks := append(layerHooks(m, patchKinds...), logitsHook)
	want := runCaches(t, m, [][]int32{clean}, RunOptions{Hooks: hooks})[0]
	p := PatchFrom(get(t, want, models.Hook{Kind: models.ResidPre, Layer: 0}))
	got := runCaches(t, m, [][]int32{corrupt}, RunOptions{Hooks: hooks, Patches: [][]Patch{{p}}})[0]
	for _, h := range hooks {
		requireBits(t, h.Name(), get(t, got, h).Data, get(t, want, h).Data)
	}
}

// TestPatchMatchesReference checks that a replaced value reaches every
// later hook and the logits as the pure-Go reference computes them with the
// same replacement. The replacements are random rows, values no prompt
// produces, at several hooks of one run. Tolerance: the agreement bound for
// F32 weights and an F32 KV cache (1e-4 relative L2 per row, measured
// ~1e-6: float32 summation order and RoPE angles built in float32).
func TestPatchMatchesReference(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	m := loadShared(t, testmodels.Stories260K)
	ref, err := reference.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, corrupt := patchTokens(t, m)
	n := len(corrupt)
	rng := rand.New(rand.NewPCG(7, 11))
	row := func(h models.Hook) []float32 {
		r := make([]float32, m.HookWidth(h))
		for i := range r {
			r[i] = float32(rng.NormFloat64())
		}
		return r
	}
	hooks := append(layerHooks(m, patchKinds...), logitsHook)
	cases := []struct {
		hook models.Hook
		pos  int
	}{
		{models.Hook{Kind: models.ResidPre, Layer: 0}, 3},
		{models.Hook{Kind: models.Z, Layer: 1}, 8},
		{models.Hook{Kind: models.ResidPost, Layer: 1}, 11},
		{models.Hook{Kind: models.AttnOut, Layer: 2}, n - 1},
		{models.Hook{Kind: models.MLPOut, Layer: 3}, 5},
		{models.Hook{Kind: models.ResidMid, Layer: 4}, n - 1},
	}
	var patches []Patch
	var reps []reference.Replacement
	for _, tc := range cases {
		r := row(tc.hook)
		patches = append(patches, Patch{Hook: tc.hook, Positions: []int{tc.pos}, Values: r})
		reps = append(reps, reference.Replacement{Hook: tc.hook.Name(), Pos: tc.pos, Row: r})
	}
	got := runCaches(t, m, [][]int32{corrupt}, RunOptions{Hooks: hooks, Patches: [][]Patch{patches}})[0]
	want, err := ref.RunPatched(corrupt, reps)
	if err != nil {
		t.Fatal(err)
	}
	unpatched, err := ref.Run(corrupt)
	if err != nil {
		t.Fatal(err)
	}
	wc, uc := want.Cache(), unpatched.Cache()
	for _, h := range hooks {
		g, w := get(t, got, h), get(t, wc, h)
		if err := reference.Compare(h.Name(), rows(g), rows(w), 1e-4); err != nil {
			t.Error(err)
		}
	}
	// the replacements matter: the logits moved far more than the tolerance
	lg, ul := get(t, wc, logitsHook), get(t, uc, logitsHook)
	if e := reference.RelL2(lg.Row(n-1), ul.Row(n-1)); e < 1e-2 {
		t.Errorf("the replacements moved the last logits by only %.3g relative: the test cannot tell a patch from none", e)
	}
}

func rows(a *models.Activation) [][]float32 {
	out := make([][]float32, a.Rows())
	for i := range out {
		out[i] = a.Row(i)
	}
	return out
}

// patchGrid returns one variant per kind, layer and position: the clean
// activation at that one position.
func patchGrid(t testing.TB, m *Model, cleanCache *models.Cache, n int, kinds []models.Kind) [][]Patch {
	var vs [][]Patch
	for _, h := range layerHooks(m, kinds...) {
		for p := range n {
			vs = append(vs, []Patch{PatchFrom(get(t, cleanCache, h), p)})
		}
	}
	return vs
}

// TestPatchFastMatchesPlain checks that prefix KV reuse and several
// variants per decode give the logits of the plain path, which decodes
// every variant from position 0 alone.
//
// Tolerance 1e-5 relative L2 per logit row: a recomputed token's attention
// reads the shared prefix from other KV cells than in the plain run, and
// ggml sums over the cells in SIMD lanes chosen by the cell index, so the
// float32 summation order changes (the same reason as in
// TestSequencesInOneBatch). Measured on stories260K: see the log.
func TestPatchFastMatchesPlain(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.TinyStories656KQ8} {
		t.Run(name, func(t *testing.T) {
			m := loadShared(t, name)
			clean, corrupt := patchTokens(t, m)
			n, nv := len(clean), m.NVocab()
			kinds := []models.Kind{models.ResidPre, models.AttnOut, models.MLPOut, models.ResidPost}
			cc := runCaches(t, m, [][]int32{clean}, RunOptions{Hooks: layerHooks(m, kinds...)})[0]
			vs := patchGrid(t, m, cc, n, kinds)
			logits := []int{n - 3, n - 1}
			var plain *PatchResult
			for _, tc := range []struct {
				name string
				p    ContextParams
				o    PatchOptions
			}{
				{"plain", patchParams(1), PatchOptions{Plain: true}},
				{"prefix", patchParams(2), PatchOptions{}},
				{"prefix+8 per decode", patchParams(9), PatchOptions{}},
				{"prefix+8 per decode, ubatch 16", ContextParams{Threads: 1, NSeqMax: 9, NUBatch: 16}, PatchOptions{}},
				{"prefix+8 per decode, batch 16", ContextParams{Threads: 1, NSeqMax: 9, NBatch: 16, NUBatch: 16}, PatchOptions{}},
				{"prefix+3 per decode, small context", ContextParams{Threads: 1, NSeqMax: 9, NCtx: 64}, PatchOptions{Parallel: 3}},
			} {
				c, err := m.NewContext(tc.p)
				if err != nil {
					t.Fatal(err)
				}
				tc.o.Logits = logits
				res, err := c.Patch(corrupt, vs, tc.o)
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
				if tc.o.Plain {
					plain = res
					continue
				}
				worst, exact := 0.0, 0
				for i, v := range res.Variants {
					for j := range logits {
						e := reference.RelL2(v[j*nv:(j+1)*nv], plain.Variants[i][j*nv:(j+1)*nv])
						worst = max(worst, e)
						if e == 0 {
							exact++
						}
					}
				}
				t.Logf("%s: %d variants, %d tokens in %d decodes (plain: %d tokens); worst relative L2 %.3g, %d of %d rows bit-identical",
					tc.name, len(vs), res.Tokens, res.Decodes, plain.Tokens, worst, exact, len(vs)*len(logits))
				if worst > fastTol {
					t.Errorf("%s: logits differ from the plain path by %.3g relative L2", tc.name, worst)
				}
				// the base is decoded as in the plain path, but other
				// ubatch sizes may pick other matmul kernels
				requireClose(t, tc.name+": base", res.Base, plain.Base)
				if res.Tokens >= plain.Tokens*2/3 {
					t.Errorf("%s decoded %d tokens, the plain path %d: no prefix was reused", tc.name, res.Tokens, plain.Tokens)
				}
			}
		})
	}
}

// TestPatchRunGroups checks Run with patches for some of several sequences
// decoded together: the patch lands in its own sequence only, whose
// logits match a separate patched run (tolerance 1e-5 as in
// TestSequencesInOneBatch: other batch shapes, other float32 kernels).
func TestPatchRunGroups(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	clean, corrupt := patchTokens(t, m)
	h := models.Hook{Kind: models.ResidPost, Layer: 2}
	cc := runCaches(t, m, [][]int32{clean}, RunOptions{Hooks: []models.Hook{h}})[0]
	p := PatchFrom(get(t, cc, h), 11, 12)
	seqs := [][]int32{corrupt, corrupt, clean, corrupt}
	c, err := m.NewContext(patchParams(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	together := runOn(t, c, seqs, RunOptions{Hooks: []models.Hook{h, logitsHook}, Patches: [][]Patch{nil, {p}, nil, {p}}})
	alone := runCaches(t, m, [][]int32{corrupt, corrupt}, RunOptions{Hooks: []models.Hook{logitsHook}, Patches: [][]Patch{nil, {p}}})
	for i, want := range []*models.Cache{alone[0], alone[1], nil, alone[1]} {
		if want == nil {
			continue
		}
		requireClose(t, fmt.Sprintf("sequence %d", i), get(t, together[i], logitsHook).Data, get(t, want, logitsHook).Data)
	}
	// the patched rows are the clean ones, the others the corrupt run's
	requireBits(t, "patched rows", get(t, together[1], h).Data[11*m.NEmbd():13*m.NEmbd()], get(t, cc, h).Data[11*m.NEmbd():13*m.NEmbd()])
	if sameBits(get(t, together[0], logitsHook).Row(len(corrupt)-1), get(t, together[1], logitsHook).Row(len(corrupt)-1)) < 0 {
		t.Error("the patched and the unpatched sequence have the same logits")
	}
}

// TestPatchCaptureShowsPatch checks that a hook captured and patched in
// one run returns the patched rows, under each of its names.
func TestPatchCaptureShowsPatch(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	_, corrupt := patchTokens(t, m)
	row := make([]float32, m.NEmbd())
	for i := range row {
		row[i] = float32(i%7) - 3
	}
	post1, pre2 := models.Hook{Kind: models.ResidPost, Layer: 1}, models.Hook{Kind: models.ResidPre, Layer: 2}
	hooks := []models.Hook{post1, pre2, logitsHook}
	base := runCaches(t, m, [][]int32{corrupt}, RunOptions{Hooks: hooks})[0]
	got := runCaches(t, m, [][]int32{corrupt}, RunOptions{Hooks: hooks, Patches: [][]Patch{{{Hook: pre2, Positions: []int{4}, Values: row}}}})[0]
	for _, h := range []models.Hook{post1, pre2} {
		requireBits(t, h.Name()+" row 4", get(t, got, h).Row(4), row)
		requireBits(t, h.Name()+" row 3", get(t, got, h).Row(3), get(t, base, h).Row(3))
	}
	if sameBits(get(t, got, logitsHook).Row(4), get(t, base, logitsHook).Row(4)) < 0 {
		t.Error("the patch did not reach the logits")
	}
}

func TestPatchErrors(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	c, err := m.NewContext(patchParams(2))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seq := []int32{1, 400, 300, 200}
	d := m.NEmbd()
	row := make([]float32, d)
	rp := models.Hook{Kind: models.ResidPost, Layer: 1}
	for _, tc := range []struct {
		name  string
		patch Patch
		want  string
	}{
		{"position", Patch{Hook: rp, Positions: []int{4}, Values: row}, "outside the sequence of 4"},
		{"negative position", Patch{Hook: rp, Positions: []int{-1}, Values: row}, "outside"},
		{"twice", Patch{Hook: rp, Positions: []int{1, 1}, Values: append(row, row...)}, "twice"},
		{"width", Patch{Hook: rp, Positions: []int{1}, Values: row[:d-1]}, fmt.Sprintf("want %d", d)},
		{"all positions, one row", Patch{Hook: rp, Values: row}, fmt.Sprintf("want %d", 4*d)},
		{"layer", Patch{Hook: models.Hook{Kind: models.ResidPost, Layer: m.NLayer()}, Positions: []int{1}, Values: row}, "layer out of range"},
		{"logits", Patch{Hook: logitsHook, Positions: []int{1}, Values: make([]float32, m.NVocab())}, "cannot be patched"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Run([][]int32{seq}, RunOptions{Patches: [][]Patch{{tc.patch}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run: error %v, want one mentioning %q", err, tc.want)
			}
			_, err = c.Patch(seq, [][]Patch{{tc.patch}}, PatchOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Patch: error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	ok := Patch{Hook: rp, Positions: []int{1}, Values: row}
	if _, err := c.Run([][]int32{seq}, RunOptions{Patches: [][]Patch{{ok}}, NoLogits: true}); err == nil {
		t.Error("NoLogits with patches accepted")
	}
	if _, err := c.Run([][]int32{seq}, RunOptions{Patches: [][]Patch{{ok}}, Keep: true}); err == nil {
		t.Error("Keep with patches accepted")
	}
	if _, err := c.Run([][]int32{seq}, RunOptions{Patches: [][]Patch{{ok}, {ok}}}); err == nil {
		t.Error("patches for more sequences than given accepted")
	}
	if _, err := c.Patch(seq, [][]Patch{{ok}}, PatchOptions{Logits: []int{4}}); err == nil {
		t.Error("logits past the sequence accepted")
	}
	// the same node twice under two names
	pre2 := Patch{Hook: models.Hook{Kind: models.ResidPre, Layer: 2}, Positions: []int{1}, Values: row}
	if _, err := c.Run([][]int32{seq}, RunOptions{Patches: [][]Patch{{ok, pre2}}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("resid_post.1 and resid_pre.2 at one position: error %v, want one saying it is patched twice", err)
	}
	one, err := m.NewContext(patchParams(1))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if _, err := one.Patch(seq, [][]Patch{{ok}}, PatchOptions{}); err == nil || !strings.Contains(err.Error(), "NSeqMax") {
		t.Errorf("prefix reuse on a one-sequence context: error %v, want one naming NSeqMax", err)
	}
	bare, err := m.NewContext(ContextParams{Threads: 1, NoCallback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if _, err := bare.Run([][]int32{seq}, RunOptions{Patches: [][]Patch{{ok}}}); err == nil {
		t.Error("patching on a context without the callback accepted")
	}
}

// BenchmarkPatch measures activation-patching sweeps: every variant writes
// one clean activation row into the corrupt run, and reports runs/s
// (patched variants per second).
//
// stories260K: resid_pre, attn_out, mlp_out and resid_post of every layer
// at every position (340 variants), on one thread, by the plain path (each
// variant decoded from position 0 alone), with prefix KV reuse, and with
// prefix reuse and 8 or 32 variants per decode.
//
// bench-cpu (16 layers, d_model 2048, Q4_0): resid_post of layers 5 and
// 10 at each of 20 positions (40 variants) with prefix reuse and 16
// variants per decode, the default of lldiff patch, against a bare decode of the clean
// prompt on a context without the eval callback, alternated so both see the
// same machine state. It reports patch/clean-decode-ratio, the time of one
// patched run over one clean decode (target ≤ 1.5).
func BenchmarkPatch(b *testing.B) {
	b.Run("stories260K", func(b *testing.B) {
		m := loadShared(b, testmodels.Stories260K)
		clean, corrupt := patchTokens(b, m)
		kinds := []models.Kind{models.ResidPre, models.AttnOut, models.MLPOut, models.ResidPost}
		cc := runCaches(b, m, [][]int32{clean}, RunOptions{Hooks: layerHooks(m, kinds...)})[0]
		vs := patchGrid(b, m, cc, len(clean), kinds)
		for _, tc := range []struct {
			name string
			nSeq int
			o    PatchOptions
		}{
			{"plain", 1, PatchOptions{Plain: true}},
			{"prefix", 2, PatchOptions{}},
			{"prefix+8", 9, PatchOptions{}},
			{"prefix+32", 33, PatchOptions{}},
		} {
			b.Run(tc.name, func(b *testing.B) {
				benchPatch(b, m, patchParams(tc.nSeq), corrupt, vs, tc.o, false)
			})
		}
	})
	b.Run("bench-cpu", func(b *testing.B) {
		m := benchCPUModel(b)
		clean := benchTokens(20)
		corrupt := slices.Clone(clean)
		corrupt[10]++
		var hooks []models.Hook
		for _, l := range []int{5, 10} {
			hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
		}
		c, err := m.NewContext(ContextParams{NCtx: 512})
		if err != nil {
			b.Fatal(err)
		}
		cc := runOn(b, c, [][]int32{clean}, RunOptions{Hooks: hooks})[0]
		c.Close()
		var vs [][]Patch
		for _, h := range hooks {
			for p := range clean {
				vs = append(vs, []Patch{PatchFrom(get(b, cc, h), p)})
			}
		}
		b.Run("prefix+16", func(b *testing.B) {
			benchPatch(b, m, ContextParams{NCtx: 512, NSeqMax: 17}, corrupt, vs, PatchOptions{}, true)
		})
	})
}

// benchPatch runs the variants b.N times and reports runs/s; with ratio it
// also times a bare decode of base each iteration and reports
// patch/clean-decode-ratio.
func benchPatch(b *testing.B, m *Model, p ContextParams, base []int32, vs [][]Patch, o PatchOptions, ratio bool) {
	c, err := m.NewContext(p)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	bp := p
	bp.NoCallback, bp.NSeqMax = true, 1
	bare, err := m.NewContext(bp)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	// warm up both (page cache, weight repacking)
	if _, err := bare.Run([][]int32{base}, RunOptions{NoLogits: true}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Patch(base, vs[:1], o); err != nil {
		b.Fatal(err)
	}
	var tPatch, tBare time.Duration
	tokens := 0
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if ratio {
			if _, err := bare.Run([][]int32{base}, RunOptions{NoLogits: true}); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		res, err := c.Patch(base, vs, o)
		if err != nil {
			b.Fatal(err)
		}
		tBare += t1.Sub(t0)
		tPatch += time.Since(t1)
		tokens += res.Tokens
	}
	runs := float64(b.N * len(vs))
	b.ReportMetric(runs/tPatch.Seconds(), "runs/s")
	b.ReportMetric(float64(tokens)/runs, "tokens/run")
	if ratio {
		b.ReportMetric(tPatch.Seconds()/runs/(tBare.Seconds()/float64(b.N)), "patch/clean-decode-ratio")
	}
}
