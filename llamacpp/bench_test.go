package llamacpp

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lldiff/lldiff/models"
)

// benchModel returns a synthetic model for benchmarks, written once into
// $TMPDIR/lldiff-bench and reused (it is deterministic).
func benchModel(b *testing.B, preset string, typ models.GGMLType) string {
	b.Helper()
	spec, err := models.SynthPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	spec.Type = typ
	dir, err := models.SharedModelsDir()
	if err != nil {
		b.Fatal(err)
	}
	spec.VocabPath = filepath.Join(dir, models.VocabLlamaSPM)
	cache := filepath.Join(os.TempDir(), "lldiff-bench")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(cache, fmt.Sprintf("%s-%s.gguf", preset, typ))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := models.WriteSynthetic(p, spec); err != nil {
		b.Fatal(err)
	}
	return p
}

func benchTokens(n int) []int32 {
	t := []int32{1}
	x := uint32(7)
	for len(t) < n {
		x = x*1664525 + 1013904223
		t = append(t, int32(100+x>>8%20000))
	}
	return t
}

// BenchmarkCaptureOverhead measures capture of resid_post, attn_out and
// mlp_out at every layer and position against a bare decode of the same
// tokens on a context without the eval callback (logits for the last token
// only), alternating the two so both see the same machine state. It
// reports capture/decode-ratio (target ≤ 1.10 on CPU).
func BenchmarkCaptureOverhead(b *testing.B) {
	path := benchModel(b, "bench-cpu", models.Q4_0)
	m, err := LoadModel(path, ModelParams{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	toks := [][]int32{benchTokens(20)}
	bare, err := m.NewContext(ContextParams{NCtx: 256, NoCallback: true})
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	capc, err := m.NewContext(ContextParams{NCtx: 256})
	if err != nil {
		b.Fatal(err)
	}
	defer capc.Close()
	hooks, _ := models.ParseHooks("resid_post,attn_out,mlp_out", m.NLayer())
	// warm up both (page cache, weight repacking)
	if _, err := bare.Run(toks, RunOptions{NoLogits: true}); err != nil {
		b.Fatal(err)
	}
	if _, err := capc.Run(toks, RunOptions{Hooks: hooks}); err != nil {
		b.Fatal(err)
	}
	var tBare, tCap time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := bare.Run(toks, RunOptions{NoLogits: true}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := capc.Run(toks, RunOptions{Hooks: hooks}); err != nil {
			b.Fatal(err)
		}
		tBare += t1.Sub(t0)
		tCap += time.Since(t1)
	}
	b.ReportMetric(float64(tBare.Microseconds())/float64(b.N)/1000, "bare-ms")
	b.ReportMetric(float64(tCap.Microseconds())/float64(b.N)/1000, "capture-ms")
	b.ReportMetric(tCap.Seconds()/tBare.Seconds(), "capture/decode-ratio")
}
