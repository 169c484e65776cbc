package llamacpp

import (
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/internal/benchutil"
	"github.com/lldiff/lldiff/models"
)

// benchCPUModel loads the bench-cpu preset (or $LLDIFF_BENCH_PRESET) with
// Q4_0 weights, written once (benchmodels.Synthetic), with
// $LLDIFF_BENCH_NGL layers on the GPU; it is closed when the benchmark ends.
func benchCPUModel(b *testing.B) *Model {
	b.Helper()
	path, err := benchmodels.Synthetic(benchPreset(), models.Q4_0)
	if err != nil {
		b.Fatal(err)
	}
	m, err := LoadModel(path, ModelParams{GPULayers: benchNGL()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
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
// mlp_out at every layer and position against a decode of the same batch on
// a context without the eval callback, alternating the runs so all see the
// same machine state. Capture needs every position's rows at the last layer,
// so it asks llama.cpp for logits at every position; the baseline of the
// target does too (capture/decode-ratio, target ≤ 1.10). The cost of those
// extra output rows against a plain prompt evaluation (logits of the last
// token only) is reported apart as capture/decode-last-ratio.
func BenchmarkCaptureOverhead(b *testing.B) {
	m := benchCPUModel(b)
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
	runs := []struct {
		c *Context
		o RunOptions
	}{
		{bare, RunOptions{NoLogits: true}},
		{bare, RunOptions{}},
		{capc, RunOptions{Hooks: hooks}},
	}
	for _, r := range runs { // warm up: page cache, weight repacking
		if _, err := r.c.Run(toks, r.o); err != nil {
			b.Fatal(err)
		}
	}
	// the same capture handed out by Stream, which copies no row into Go
	// memory: what the callback and the graph cuts cost by themselves
	stream := func() {
		if err := capc.Stream(toks[0], hooks, func(h, pos0, width int, rows []float32) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	stream()
	// per-round times: the ratios are medians of per-round ratios, which
	// a burst of load in one round does not move (on the CI's VM a single
	// round is often 5-10 % off and sometimes 2×); captureRounds at least,
	// as the cost measured (1-2 % of a decode) is smaller than that spread
	times := make([][]time.Duration, len(runs))
	var streamT []time.Duration
	run := func(i int) {
		t0 := time.Now()
		if _, err := runs[i].c.Run(toks, runs[i].o); err != nil {
			b.Fatal(err)
		}
		times[i] = append(times[i], time.Since(t0))
	}
	// every run follows one on the other context, so that each pays the
	// same switch (the other context's workers asleep, its buffers in the
	// caches): a run after one on its own context is faster by several
	// percent on the CI's VM
	benchutil.Rounds(b, captureRounds, func() {
		run(2) // capture
		run(1) // bare, logits at every position
		t0 := time.Now()
		stream()
		streamT = append(streamT, time.Since(t0))
		run(0) // bare, last logits
	})
	b.ReportMetric(benchutil.MedianRatio(streamT, times[1]), "capture-stream/decode-ratio")
	ms := func(d []time.Duration) float64 { return benchutil.Median(d).Seconds() * 1000 }
	b.ReportMetric(ms(times[0]), "decode-last-ms")
	b.ReportMetric(ms(times[1]), "decode-all-ms")
	b.ReportMetric(ms(times[2]), "capture-ms")
	b.ReportMetric(benchutil.MedianRatio(times[2], times[1]), "capture/decode-ratio")
	b.ReportMetric(benchutil.MedianRatio(times[2], times[0]), "capture/decode-last-ratio")
}

// captureRounds is the fewest rounds BenchmarkCaptureOverhead times: the
// median of 41 per-round ratios moves by about ±0.01 between runs here.
const captureRounds = 41
