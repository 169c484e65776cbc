package llamacpp

import (
	"golang.org/x/sys/unix"

	"math"
	"os"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

func loadShared(t testing.TB, name string) *Model {
	t.Helper()
	m, err := LoadModel(testmodels.Path(t, name), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func allHooks(n int) []models.Hook {
	var hs []models.Hook
	for l := range n {
		for _, k := range models.LayerKinds {
			hs = append(hs, models.Hook{Kind: k, Layer: l})
		}
	}
	return append(hs, models.Hook{Kind: models.LnFinal, Layer: -1}, models.Hook{Kind: models.Logits, Layer: -1})
}

func runOne(t testing.TB, m *Model, p ContextParams, seqs [][]int32, hooks []models.Hook) []*models.Cache {
	t.Helper()
	c, err := m.NewContext(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caches, err := c.Run(seqs, RunOptions{Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	return caches
}

func get(t testing.TB, c *models.Cache, h models.Hook) *models.Activation {
	t.Helper()
	a, ok := c.At(h)
	if !ok {
		t.Fatalf("%s not captured", h.Name())
	}
	return a
}

// maxRelDiff returns max over rows of ‖a−b‖/max(‖b‖, tiny).
func maxRelDiff(a, b *models.Activation) float64 {
	worst := 0.0
	for r := range a.Rows() {
		x, y := a.Row(r), b.Row(r)
		var d, n float64
		for i := range x {
			e := float64(x[i]) - float64(y[i])
			d += e * e
			n += float64(y[i]) * float64(y[i])
		}
		worst = max(worst, math.Sqrt(d)/math.Max(math.Sqrt(n), 1e-30))
	}
	return worst
}

func TestCaptureIdentities(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	checkCaptureIdentities(t, m, "Once upon a time, there was a little girl named Lily.")
}

// checkCaptureIdentities captures every hook of m for text and checks
// resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out and
// resid_pre[L+1] = resid_post[L] at every layer.
func checkCaptureIdentities(t *testing.T, m *Model, text string) {
	t.Helper()
	ids, err := m.Tokenize(text, TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := m.NLayer()
	c := runOne(t, m, ContextParams{}, [][]int32{ids}, allHooks(n))[0]
	for l := range n {
		pre := get(t, c, models.Hook{Kind: models.ResidPre, Layer: l})
		attn := get(t, c, models.Hook{Kind: models.AttnOut, Layer: l})
		mid := get(t, c, models.Hook{Kind: models.ResidMid, Layer: l})
		mlp := get(t, c, models.Hook{Kind: models.MLPOut, Layer: l})
		post := get(t, c, models.Hook{Kind: models.ResidPost, Layer: l})
		for _, a := range []*models.Activation{pre, attn, mid, mlp, post} {
			if a.Rows() != len(ids) || a.Width != m.NEmbd() {
				t.Fatalf("%s: shape %dx%d, want %dx%d (every position, last layer included)", a.Hook.Name(), a.Rows(), a.Width, len(ids), m.NEmbd())
			}
		}
		// The identities are single float32 additions in ggml, and the
		// same additions here: they hold to the last bit or one rounding.
		sum := func(x, y *models.Activation) *models.Activation {
			s := &models.Activation{Width: x.Width, Data: make([]float32, len(x.Data))}
			for i := range s.Data {
				s.Data[i] = x.Data[i] + y.Data[i]
			}
			return s
		}
		if d := maxRelDiff(sum(pre, attn), mid); d > 1e-6 {
			t.Errorf("layer %d: resid_pre + attn_out != resid_mid (rel %g)", l, d)
		}
		if d := maxRelDiff(sum(mid, mlp), post); d > 1e-6 {
			t.Errorf("layer %d: resid_mid + mlp_out != resid_post (rel %g)", l, d)
		}
		if l+1 < n {
			next := get(t, c, models.Hook{Kind: models.ResidPre, Layer: l + 1})
			if d := maxRelDiff(next, post); d != 0 {
				t.Errorf("resid_pre[%d] != resid_post[%d] (rel %g)", l+1, l, d)
			}
		}
		// attention and MLP outputs are not zero and not the residual
		if maxRelDiff(attn, pre) < 0.01 || rowNorm(mlp.Row(0)) == 0 {
			t.Errorf("layer %d: attn_out or mlp_out looks wrong", l)
		}
	}
	z := get(t, c, models.Hook{Kind: models.Z, Layer: 0})
	if z.Width != m.Info.NHead*m.Info.DHead || z.Rows() != len(ids) {
		t.Errorf("hook_z shape %dx%d", z.Rows(), z.Width)
	}
}

func rowNorm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func f32s(t testing.TB, f *models.File, name string) []float32 {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	if ti.Type != models.F32 {
		t.Fatalf("%s is %s, this test reads F32", name, ti.Type)
	}
	b, err := f.ReadTensor(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return out
}

// TestLogitsFromResidual unembeds the last layer's residual in Go
// (RMSNorm with output_norm and the metadata's epsilon, then the output
// matrix) and compares with llama.cpp's logits and ln_final at every
// position. Tolerance 1e-5 relative L2: both sides accumulate in float32
// over d_model=64 terms in a different order; rounding differences are a
// few ulps (~1e-7 relative) per term, far below 1e-5, while a wrong norm,
// epsilon, or matrix orientation gives errors of order 1.
func TestLogitsFromResidual(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	ids, err := m.Tokenize("The cat sat on the mat. It was happy", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := m.NLayer()
	c := runOne(t, m, ContextParams{}, [][]int32{ids}, []models.Hook{{Kind: models.ResidPost, Layer: n - 1}, {Kind: models.LnFinal, Layer: -1}, {Kind: models.Logits, Layer: -1}})[0]
	post := get(t, c, models.Hook{Kind: models.ResidPost, Layer: n - 1})
	lnf := get(t, c, models.Hook{Kind: models.LnFinal, Layer: -1})
	logits := get(t, c, models.Hook{Kind: models.Logits, Layer: -1})
	gamma := f32s(t, m.File, "output_norm.weight")
	wname := "output.weight"
	if _, ok := m.File.Tensor(wname); !ok {
		wname = "token_embd.weight"
	}
	wu := f32s(t, m.File, wname)
	d, nv := m.NEmbd(), m.NVocab()
	eps := m.Info.NormEps
	if eps == 0 {
		t.Fatal("no RMS epsilon in metadata")
	}
	myNorm := &models.Activation{Width: d, Data: make([]float32, len(ids)*d)}
	myLogits := &models.Activation{Width: nv, Data: make([]float32, len(ids)*nv)}
	for p := range ids {
		x := post.Row(p)
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		scale := 1 / math.Sqrt(ss/float64(d)+eps)
		h := myNorm.Row(p)
		for i := range h {
			h[i] = float32(float64(x[i]) * scale * float64(gamma[i]))
		}
		for v := range nv {
			var s float64
			for i := range d {
				s += float64(wu[v*d+i]) * float64(h[i])
			}
			myLogits.Row(p)[v] = float32(s)
		}
	}
	if e := maxRelDiff(lnf, myNorm); e > 1e-5 {
		t.Errorf("ln_final.hook_normalized differs from RMSNorm(resid_post)*γ: rel %g", e)
	}
	if e := maxRelDiff(logits, myLogits); e > 1e-5 {
		t.Errorf("logits differ from W_U·norm(resid_post): rel %g", e)
	}
	if logits.Rows() != len(ids) {
		t.Errorf("logits for %d positions, want %d", logits.Rows(), len(ids))
	}
}

// TestUBatchAndBatchSplits checks that a prompt cut into small ubatches, or
// fed through several llama_decode calls, gives the rows of one big ubatch.
// Tolerance 1e-5: ggml may pick other matmul kernels for other batch sizes,
// which changes float32 summation order only.
func TestUBatchAndBatchSplits(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	ids, err := m.Tokenize("One day, a little boy named Tim went to the park with his mom. He saw a big red ball.", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 20 {
		t.Fatalf("prompt too short: %d tokens", len(ids))
	}
	hooks := allHooks(m.NLayer())
	ref := runOne(t, m, ContextParams{NCtx: 256}, [][]int32{ids}, hooks)[0]
	for _, p := range []ContextParams{{NCtx: 256, NUBatch: 7}, {NCtx: 256, NBatch: 5, NUBatch: 5}, {NCtx: 256, NBatch: 16, NUBatch: 4}} {
		got := runOne(t, m, p, [][]int32{ids}, hooks)[0]
		for _, h := range hooks {
			a, b := get(t, got, h), get(t, ref, h)
			if a.Rows() != b.Rows() {
				t.Fatalf("%+v %s: %d rows, want %d", p, h.Name(), a.Rows(), b.Rows())
			}
			if e := maxRelDiff(a, b); e > 1e-5 {
				t.Errorf("batch %d ubatch %d: %s differs by %g", p.NBatch, p.NUBatch, h.Name(), e)
			}
		}
	}
}

// TestSequencesInOneBatch checks that prompts decoded together as separate
// sequences give the activations of separate runs (same tolerance and reason
// as above), so datasets can be batched without padding.
func TestSequencesInOneBatch(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	var seqs [][]int32
	for _, s := range []string{"The little dog was happy", "Lily had a red ball and a big", "Tom"} {
		ids, err := m.Tokenize(s, TokenizeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ids)
	}
	hooks := allHooks(m.NLayer())
	together := runOne(t, m, ContextParams{NSeqMax: 3, NUBatch: 8}, seqs, hooks)
	for i, s := range seqs {
		alone := runOne(t, m, ContextParams{}, [][]int32{s}, hooks)[0]
		for _, h := range hooks {
			a, b := get(t, together[i], h), get(t, alone, h)
			if a.Rows() != len(s) {
				t.Fatalf("seq %d %s: %d rows, want %d", i, h.Name(), a.Rows(), len(s))
			}
			if e := maxRelDiff(a, b); e > 1e-5 {
				t.Errorf("seq %d: %s differs between batched and separate runs by %g", i, h.Name(), e)
			}
		}
	}
}

func TestSelectionCopiesOnlySubset(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	ids, _ := m.Tokenize("Once upon a time", TokenizeOptions{})
	c, err := m.NewContext(ContextParams{NUBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Run([][]int32{ids}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if asked, acc := c.CallbackStats(); asked != 0 || acc != 0 {
		t.Errorf("nothing selected: callback asked %d, accepted %d; want 0, 0", asked, acc)
	}
	caches, err := c.Run([][]int32{ids}, RunOptions{Hooks: []models.Hook{{Kind: models.AttnOut, Layer: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	ubatches := int64((len(ids) + 1) / 2)
	if asked, acc := c.CallbackStats(); acc != ubatches || asked < 10*ubatches {
		t.Errorf("one hook over %d ubatches: asked %d, accepted %d", ubatches, asked, acc)
	}
	if got := len(caches[0].Hooks()); got != 2 { // attn_out.2 and logits
		t.Errorf("cache holds %d hooks, want 2", got)
	}
}

func TestRunErrors(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	c, err := m.NewContext(ContextParams{NCtx: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	long := make([]int32, 17)
	for i := range long {
		long[i] = 1
	}
	for _, tc := range []struct {
		name string
		seqs [][]int32
		o    RunOptions
	}{
		{"empty", [][]int32{{}}, RunOptions{}},
		{"bad token", [][]int32{{1, int32(m.NVocab())}}, RunOptions{}},
		{"negative token", [][]int32{{-1}}, RunOptions{}},
		{"too long", [][]int32{long}, RunOptions{}},
		{"layer out of range", [][]int32{{1, 2}}, RunOptions{Hooks: []models.Hook{{Kind: models.ResidPost, Layer: m.NLayer()}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Run(tc.seqs, tc.o)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
		})
	}
	if _, err := m.NewContext(ContextParams{KVType: "q4"}); err == nil {
		t.Error("bad KV type accepted")
	}
	c.Close()
	c.Close() // idempotent
	if _, err := c.Run([][]int32{{1}}, RunOptions{}); err == nil {
		t.Error("run on closed context")
	}
}

func TestModelCloseTwice(t *testing.T) {
	m, err := LoadModel(testmodels.Path(t, "stories260K.gguf"), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	m.Close()
	if _, err := m.Tokenize("x", TokenizeOptions{}); err == nil {
		t.Error("tokenize after close")
	}
}

// TestLogQuietUnlessVerbose checks that llama.cpp's log stays off stderr
// unless SetVerbose(true), by pointing file descriptor 2 at a file while a
// model loads.
func TestLogQuietUnlessVerbose(t *testing.T) {
	path := testmodels.Path(t, "stories260K.gguf")
	load := func(verbose bool) string {
		f, err := os.CreateTemp(t.TempDir(), "stderr")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		saved, err := unix.Dup(2)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Dup2(int(f.Fd()), 2); err != nil {
			t.Fatal(err)
		}
		SetVerbose(verbose)
		m, err := LoadModel(path, ModelParams{})
		if err == nil {
			c, err := m.NewContext(ContextParams{})
			if err == nil {
				c.Close()
			}
			m.Close()
		}
		SetVerbose(false)
		unix.Dup2(saved, 2)
		unix.Close(saved)
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
	if out := load(false); out != "" {
		t.Errorf("llama.cpp wrote to stderr without -v:\n%s", out)
	}
	if out := load(true); !strings.Contains(out, "llama") {
		t.Errorf("with -v, stderr has no llama.cpp log: %q", out)
	}
}
