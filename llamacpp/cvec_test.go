package llamacpp

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/models"
)

// randomDir returns a direction of d values with the given norm.
func randomDir(seed uint64, d int, norm float64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 99))
	v := make([]float64, d)
	var s float64
	for i := range v {
		v[i] = rng.NormFloat64()
		s += v[i] * v[i]
	}
	out := make([]float32, d)
	for i := range v {
		out[i] = float32(v[i] / math.Sqrt(s) * norm)
	}
	return out
}

func scaled(v []float32, s float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * s
	}
	return out
}

func logitsOf(t *testing.T, c *Context, seqs [][]int32) [][]float32 {
	t.Helper()
	caches, err := c.Run(seqs, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]float32, len(caches))
	for i, cache := range caches {
		a := get(t, cache, models.Hook{Kind: models.Logits, Layer: -1})
		out[i] = a.Data
	}
	return out
}

func identical(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// TestControlVectorScales proves that changing the control vector between
// decodes of one context changes the output, to exactly what a fresh
// context with that vector computes: llama.cpp may reuse its compute
// graph, and must then read the new values.
func TestControlVectorScales(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	nl, d := m.NLayer(), m.NEmbd()
	toks, err := m.Tokenize("Once upon a time, there was a little girl", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seqs := [][]int32{toks}
	v := randomDir(1, d, 4)
	dirs := func(s float32) [][]float32 {
		out := make([][]float32, nl)
		out[2] = scaled(v, s)
		return out
	}
	fresh := func(s float32) []float32 {
		c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if s != 0 {
			if err := c.SetControlVector(dirs(s)); err != nil {
				t.Fatal(err)
			}
		}
		return logitsOf(t, c, seqs)[0]
	}
	base := fresh(0) // never had a vector

	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The same context through a sequence of vectors; each decode has the
	// same shape, so llama.cpp reuses its graph every time.
	prev := []float32(nil)
	for _, s := range []float32{0, 1, 2, -1, 0} {
		if err := c.SetControlVector(dirs(s)); err != nil {
			t.Fatal(err)
		}
		got := logitsOf(t, c, seqs)[0]
		want := base
		if s != 0 {
			want = fresh(s)
		}
		// Bit-identical: the same graph, the same values; a vector of
		// zeros adds exactly nothing.
		if !identical(got, want) {
			t.Errorf("scale %v: logits differ from a fresh context with that vector by up to %.3g", s, maxAbsDiff(got, want))
		}
		if prev != nil && identical(got, prev) {
			t.Errorf("scale %v: logits unchanged from the previous scale: a stale graph or stale vector", s)
		}
		prev = got
	}
	if maxAbsDiff(fresh(1), base) < 1e-3 {
		t.Fatal("a vector of norm 4 at layer 2 hardly changes the logits: the test proves nothing")
	}
	if err := c.ClearControlVector(); err != nil {
		t.Fatal(err)
	}
	if got := logitsOf(t, c, seqs)[0]; !identical(got, base) {
		t.Errorf("after ClearControlVector the logits differ from a context without a vector by %.3g", maxAbsDiff(got, base))
	}
	if ls := c.ControlVectorLayers(); len(ls) != 0 {
		t.Errorf("ControlVectorLayers after clear = %v", ls)
	}
}

// TestControlVectorAtResidPost checks where llama.cpp adds direction.L:
// to resid_post.L (l_out-L), after the MLP's residual add, so that
// resid_post.L − (resid_mid.L + mlp_out.L) is the vector at every token,
// and nothing before layer L changes.
func TestControlVectorAtResidPost(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	nl, d := m.NLayer(), m.NEmbd()
	toks, _ := m.Tokenize("The dog ran to the park", TokenizeOptions{})
	const layer = 3
	v := randomDir(2, d, 2)
	var hooks []models.Hook
	for l := range nl {
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l}, models.Hook{Kind: models.ResidMid, Layer: l}, models.Hook{Kind: models.MLPOut, Layer: l})
	}
	run := func(withVec bool) *models.Cache {
		c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if withVec {
			dirs := make([][]float32, nl)
			dirs[layer] = v
			if err := c.SetControlVector(dirs); err != nil {
				t.Fatal(err)
			}
			if got := c.ControlVectorLayers(); len(got) != 1 || got[0] != layer {
				t.Fatalf("ControlVectorLayers = %v", got)
			}
		}
		caches, err := c.Run([][]int32{toks}, RunOptions{Hooks: hooks})
		if err != nil {
			t.Fatal(err)
		}
		return caches[0]
	}
	base, steered := run(false), run(true)
	for l := range layer {
		h := models.Hook{Kind: models.ResidPost, Layer: l}
		if !identical(get(t, base, h).Data, get(t, steered, h).Data) {
			t.Errorf("%s changed although the vector is added at layer %d", h.Short(), layer)
		}
	}
	post := get(t, steered, models.Hook{Kind: models.ResidPost, Layer: layer})
	mid := get(t, steered, models.Hook{Kind: models.ResidMid, Layer: layer})
	mlp := get(t, steered, models.Hook{Kind: models.MLPOut, Layer: layer})
	for r := range post.Rows() {
		for i := range d {
			added := float64(post.Row(r)[i]) - float64(mid.Row(r)[i]) - float64(mlp.Row(r)[i])
			// two float32 additions of values of magnitude up to ~10:
			// rounding of about 1e-6 each
			if math.Abs(added-float64(v[i])) > 1e-5 {
				t.Fatalf("row %d dim %d: resid_post − resid_mid − mlp_out = %.7f, want the vector's %.7f", r, i, added, v[i])
			}
		}
	}
	// mlp_out at the layer is the MLP alone, not the residual add that
	// llama.cpp also names ffn_out when a vector is loaded
	if !identical(get(t, base, models.Hook{Kind: models.MLPOut, Layer: layer}).Data, mlp.Data) {
		t.Error("mlp_out at the vector's layer changed: the hook table picked the wrong ffn_out node")
	}
}

// TestControlVectorStaleGraph shows why SetControlVector rebuilds a context
// that has decoded without a vector: llama.cpp turns its adapter on, but
// reuses the graph it built without the add nodes, and the vector has no
// effect until the ubatch shape changes. If the first part fails because the
// vector now applies, llama.cpp fixed its reuse check and the rebuild can go.
// The second part checks that SetControlVector after decodes gives exactly
// what a fresh context with the vector gives.
func TestControlVectorStaleGraph(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	nl, d := m.NLayer(), m.NEmbd()
	toks, _ := m.Tokenize("Once upon a time", TokenizeOptions{})
	longer, _ := m.Tokenize("Once upon a time, in a small town", TokenizeOptions{})
	v := randomDir(3, d, 4)
	data := make([]float32, (nl-1)*d)
	copy(data[(2-1)*d:], v) // layer 2
	dirs := make([][]float32, nl)
	dirs[2] = v
	newCtx := func() *Context {
		c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// llama.cpp's own behaviour, through its call directly.
	c := newCtx()
	base := logitsOf(t, c, [][]int32{toks})[0]
	baseLonger := logitsOf(t, c, [][]int32{longer})[0]
	base2 := logitsOf(t, c, [][]int32{toks})[0] // graph for toks' shape is current again
	if !identical(base, base2) {
		t.Fatal("two plain decodes of the same tokens differ")
	}
	c.mu.Lock()
	err := c.applyAdapter(data)
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	stale := logitsOf(t, c, [][]int32{toks})[0]
	if !identical(stale, base) {
		t.Fatalf("llama.cpp applied a vector turned on after a decode (logits moved by %.3g): its graph reuse no longer goes stale; SetControlVector need not rebuild",
			maxAbsDiff(stale, base))
	}
	// A new shape forces a new graph, and only then the vector counts.
	if got := logitsOf(t, c, [][]int32{longer})[0]; maxAbsDiff(got, baseLonger) < 1e-3 {
		t.Error("after a new graph was built, the vector still had no effect")
	}

	// lldiff: SetControlVector after decodes equals a fresh context with
	// the vector set before its first decode.
	fresh := newCtx()
	if err := fresh.SetControlVector(dirs); err != nil {
		t.Fatal(err)
	}
	want := logitsOf(t, fresh, [][]int32{toks})[0]
	if maxAbsDiff(want, base) < 1e-3 {
		t.Fatal("the vector does not move the logits: the test cannot tell stale from fresh")
	}
	used := newCtx()
	logitsOf(t, used, [][]int32{toks})
	logitsOf(t, used, [][]int32{toks})
	if err := used.SetControlVector(dirs); err != nil {
		t.Fatal(err)
	}
	if got := logitsOf(t, used, [][]int32{toks})[0]; !identical(got, want) {
		t.Errorf("SetControlVector after decodes: logits differ from a fresh context by %.3g", maxAbsDiff(got, want))
	}
	// and the context keeps capturing after the rebuild
	caches, err := used.Run([][]int32{toks}, RunOptions{Hooks: []models.Hook{{Kind: models.ResidPost, Layer: 2}}})
	if err != nil || caches[0] == nil {
		t.Fatalf("capture after rebuild: %v", err)
	}
}

func TestControlVectorErrors(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	nl, d := m.NLayer(), m.NEmbd()
	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nan := make([]float32, d)
	nan[3] = float32(math.NaN())
	for _, tc := range []struct {
		name string
		dirs [][]float32
		want string
	}{
		{"layer 0", [][]float32{randomDir(4, d, 1)}, "layer 0"},
		{"width", [][]float32{nil, make([]float32, d+1)}, "d_model"},
		{"nan", [][]float32{nil, nan}, "NaN"},
		{"layers", make([][]float32, nl+1), "the model has"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.SetControlVector(tc.dirs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// zeros at layer 0 are accepted (nothing to add)
	if err := c.SetControlVector([][]float32{make([]float32, d)}); err != nil {
		t.Errorf("zeros at layer 0: %v", err)
	}
}

// TestControlVectorFileRoundTrip writes a control vector file, reads it
// back with llama.cpp's rules and applies it with llama_apply_adapter_cvec:
// the logits are those of the vector applied from memory.
func TestControlVectorFileRoundTrip(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	nl, d := m.NLayer(), m.NEmbd()
	toks, _ := m.Tokenize("Lily and Tom", TokenizeOptions{})
	cv := &contrast.ControlVector{ModelHint: m.Arch(), Directions: map[int][]float32{}}
	mem := make([][]float32, nl)
	for l := 1; l < nl; l++ {
		cv.Directions[l] = randomDir(uint64(10+l), d, 1)
		mem[l] = scaled(cv.Directions[l], 1.5)
	}
	p := filepath.Join(t.TempDir(), "v.gguf")
	if err := cv.WriteFile(p, false); err != nil {
		t.Fatal(err)
	}
	back, err := contrast.ReadControlVector(p)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, dropped := back.PerLayer(nl, 1.5, 0, nl)
	if len(dropped) != 0 {
		t.Fatalf("dropped %v", dropped)
	}
	var got [2][]float32
	for i, dirs := range [][][]float32{mem, fromFile} {
		c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetControlVector(dirs); err != nil {
			t.Fatal(err)
		}
		got[i] = logitsOf(t, c, [][]int32{toks})[0]
		c.Close()
	}
	if !identical(got[0], got[1]) {
		t.Errorf("vector read back from the file steers differently: logits differ by %.3g", maxAbsDiff(got[0], got[1]))
	}
}
