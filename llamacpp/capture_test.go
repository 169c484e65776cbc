package llamacpp

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// sharedModel returns the path of a file in ../shared/models, failing the
// test with the path when it is missing.
func sharedModel(t testing.TB, name string) string {
	t.Helper()
	dir, err := models.SharedModelsDir()
	if err != nil {
		if os.Getenv("LLDIFF_SKIP_SHARED") == "1" {
			t.Skip("LLDIFF_SKIP_SHARED=1:", err)
		}
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test model missing: %v (the shared models live in ../shared/models; set LLDIFF_SHARED_MODELS)", err)
	}
	return p
}

func loadShared(t testing.TB, name string) *Model {
	t.Helper()
	m, err := LoadModel(sharedModel(t, name), ModelParams{})
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
	ids, err := m.Tokenize("Once upon a time, there was a little girl named Lily.", TokenizeOptions{})
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
