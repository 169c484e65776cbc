package cli

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/internal/benchutil"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// benchPairs returns n he/she prompt pairs of about 20 tokens.
func benchPairs(n int) *contrast.Dataset {
	subjects := []string{"Lily", "the little girl", "the old dog", "Tom's friend", "the baker", "a small bird", "the teacher", "Sue"}
	places := []string{"the park", "the big forest", "the red house", "the sunny beach", "the busy market"}
	ds := &contrast.Dataset{Paired: true}
	for i := range n {
		s := fmt.Sprintf("One day %s went to %s to find a shiny ball, and then", subjects[i%len(subjects)], places[i%len(places)])
		ds.A = append(ds.A, contrast.Prompt{Text: s + " she", Source: fmt.Sprint(i)})
		ds.B = append(ds.B, contrast.Prompt{Text: s + " he", Source: fmt.Sprint(i)})
	}
	return ds
}

// BenchmarkContrast measures contrast's throughput on a synthetic model:
// decoding 64 prompts (32 pairs) with resid_post, attn_out and mlp_out
// captured at every layer, the rows taken, and the statistics (mean
// difference, projections, held-out accuracy, PCA) of every component.
// Three ways, alternated so that all see the same machine state:
//
//	batched  8 sequences per decode (contrast's default --parallel)
//	serial   one sequence per decode
//	bare     llama.cpp alone: the same batches on a context without the
//	         eval callback, last-token logits only
//
// It reports prompts/s of each, the batching speedup, and
// llamacpp/contrast-ratio = contrast time ÷ bare llama.cpp time (target
// ≤ 1.25: contrast keeps at least 80% of llama.cpp's batched throughput).
func BenchmarkContrast(b *testing.B) {
	path, err := benchmodels.Synthetic("small", models.F16)
	if err != nil {
		b.Fatal(err)
	}
	m, err := llamacpp.LoadModel(path, llamacpp.ModelParams{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ds := benchPairs(32)
	cd := &analysis.ContrastData{Dataset: ds}
	for _, side := range []struct {
		ps  []contrast.Prompt
		ids *[][]int32
		row *[][]int
	}{{ds.A, &cd.IDsA, &cd.RowsA}, {ds.B, &cd.IDsB, &cd.RowsB}} {
		for _, p := range side.ps {
			ids, err := m.Tokenize(p.Text, llamacpp.TokenizeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			*side.ids = append(*side.ids, ids)
			*side.row = append(*side.row, []int{len(ids) - 1})
		}
	}
	var hooks []models.Hook
	for l := range m.NLayer() {
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l}, models.Hook{Kind: models.AttnOut, Layer: l}, models.Hook{Kind: models.MLPOut, Layer: l})
	}
	hooks = models.SortHooks(hooks)
	seqs, _, _ := cd.Seqs()
	newCtx := func(nSeq int, bare bool) *llamacpp.Context {
		n := llamacpp.GroupTokens(seqs, nSeq)
		c, err := m.NewContext(llamacpp.ContextParams{NCtx: (n + 255) / 256 * 256, NSeqMax: nSeq, NoCallback: bare, Threads: benchThreads})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	batched, serial, bare := newCtx(8, false), newCtx(1, false), newCtx(8, true)
	defer batched.Close()
	defer serial.Close()
	defer bare.Close()
	var cStats time.Duration // CPU time of the statistics (batched runs)
	runContrast := func(ctx *llamacpp.Context, parallel int) {
		sa, sb, _, err := analysis.CollectRows(ctx, cd, hooks, parallel, nil)
		if err != nil {
			b.Fatal(err)
		}
		c0 := cpuTime()
		for _, h := range hooks {
			if _, err := contrast.Compute(sa[h], sb[h], true); err != nil {
				b.Fatal(err)
			}
		}
		if parallel > 1 {
			cStats += cpuTime() - c0
		}
	}
	runBare := func() {
		for i := 0; i < len(seqs); i += 8 {
			if _, err := bare.Run(seqs[i:min(i+8, len(seqs))], llamacpp.RunOptions{NoLogits: true}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// warm up (page cache, weight repacking)
	runBare()
	runContrast(batched, 8)
	runContrast(serial, 1)
	var tB, tS, tBare, cB, cBare time.Duration
	var roundB, roundBare []time.Duration // per round: the ratio is their median ratio
	cStats = 0
	benchutil.Rounds(b, benchutil.MinRounds, func() {
		c0, t0 := cpuTime(), time.Now()
		runBare()
		c1, t1 := cpuTime(), time.Now()
		runContrast(batched, 8)
		c2, t2 := cpuTime(), time.Now()
		runContrast(serial, 1)
		tBare += t1.Sub(t0)
		tB += t2.Sub(t1)
		roundBare, roundB = append(roundBare, t1.Sub(t0)), append(roundB, t2.Sub(t1))
		tS += time.Since(t2)
		cBare += c1 - c0
		cB += c2 - c1
	})
	n := float64(len(seqs) * len(roundB))
	b.ReportMetric(n/tB.Seconds(), "batched-prompts/s")
	b.ReportMetric(n/tS.Seconds(), "serial-prompts/s")
	b.ReportMetric(n/tBare.Seconds(), "llamacpp-prompts/s")
	b.ReportMetric(tS.Seconds()/tB.Seconds(), "batch-speedup")
	b.ReportMetric(benchutil.MedianRatio(roundB, roundBare), "contrast/llamacpp-ratio")
	// CPU time, for LLDIFF_BENCH_THREADS=1 on a loaded machine (one
	// thread's work; spinning workers would count with more threads), and
	// the share of the batched contrast's CPU time in the statistics
	b.ReportMetric(cB.Seconds()/cBare.Seconds(), "contrast/llamacpp-cpu")
	b.ReportMetric(cStats.Seconds()/cB.Seconds(), "stats-share")
}

// cpuTime returns the CPU time (user + system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchThreads is the thread count of BenchmarkContrast: $LLDIFF_BENCH_THREADS, default
// the physical cores.
var benchThreads = func() int {
	n, _ := strconv.Atoi(os.Getenv("LLDIFF_BENCH_THREADS"))
	return n
}()
