package llamacpp

import (
	"slices"
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/benchmodels"
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
	b.ResetTimer()
	// per-round times: the ratios are medians of per-round ratios, which
	// a burst of load in one round does not move (on the CI's VM a single
	// round can be 20 % off); at least minRounds rounds whatever b.N
	rounds := max(b.N, minRounds)
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
	for range rounds {
		run(2) // capture
		run(1) // bare, logits at every position
		t0 := time.Now()
		stream()
		streamT = append(streamT, time.Since(t0))
		run(0) // bare, last logits
	}
	b.ReportMetric(medianRatio(streamT, times[1]), "capture-stream/decode-ratio")
	ms := func(d []time.Duration) float64 { return median(d).Seconds() * 1000 }
	b.ReportMetric(ms(times[0]), "decode-last-ms")
	b.ReportMetric(ms(times[1]), "decode-all-ms")
	b.ReportMetric(ms(times[2]), "capture-ms")
	b.ReportMetric(medianRatio(times[2], times[1]), "capture/decode-ratio")
	b.ReportMetric(medianRatio(times[2], times[0]), "capture/decode-last-ratio")
}

// minRounds is the fewest alternating rounds a ratio benchmark times, so
// that its median means something under make bench's -benchtime=3x.
const minRounds = 15

// median returns the median of ds (the mean of the middle two for an even
// count); ds is not changed.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianRatio is the median over rounds of num[i] ÷ den[i]: each round's
// two sides ran back to back, so their ratio cancels the load of that
// moment, and the median drops the rounds a burst of load hit one side of.
func medianRatio(num, den []time.Duration) float64 {
	r := make([]float64, min(len(num), len(den)))
	for i := range r {
		r[i] = num[i].Seconds() / den[i].Seconds()
	}
	slices.Sort(r)
	n := len(r)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return r[n/2]
	}
	return (r[n/2-1] + r[n/2]) / 2
}
