package llamacpp

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/internal/benchutil"
	"github.com/lldiff/lldiff/models"
)

// benchCPUTyped returns the bench-cpu preset with weights of type typ:
// F16, Q8_0 and Q4_0 written directly, Q4_K_M quantized from the F16 file
// by llama.cpp (its usual mixture), all cached in $TMPDIR/lldiff-bench.
func benchCPUTyped(b *testing.B, typ string) string {
	b.Helper()
	direct := map[string]models.GGMLType{"F16": models.F16, "Q8_0": models.Q8_0, "Q4_0": models.Q4_0}
	if t, ok := direct[typ]; ok {
		p, err := benchmodels.Synthetic("bench-cpu", t)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	f16, err := benchmodels.Synthetic("bench-cpu", models.F16)
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(f16), "bench-cpu-"+typ+".gguf")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := Quantize(f16, p, QuantizeParams{Type: typ}); err != nil && !errors.Is(err, fs.ErrExist) {
		b.Fatal(err)
	}
	return p
}

// BenchmarkDecodeTypes times the bare decode of a 20-token prompt (logits
// of the last token only, no capture, the KV cache cleared between runs:
// what llama-bench's pp20 measures) on the bench-cpu shape for each weight
// type users load, and reports the median decode in tokens per second. make bench-anchor
// measures llama.cpp itself on the same files (docs/performance.md).
func BenchmarkDecodeTypes(b *testing.B) {
	for _, typ := range []string{"Q4_0", "Q4_K_M", "Q8_0", "F16"} {
		b.Run(typ, func(b *testing.B) {
			m, err := LoadModel(benchCPUTyped(b, typ), ModelParams{GPULayers: benchNGL()})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			c, err := m.NewContext(ContextParams{NCtx: 256, NoCallback: true})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			toks := [][]int32{benchTokens(20)}
			if _, err := c.Run(toks, RunOptions{NoLogits: true}); err != nil { // warm up: page cache, repacking
				b.Fatal(err)
			}
			var ts []time.Duration
			// b.Loop: the function runs once, so the model is loaded once
			// (a plain b.N loop is run with b.N = 1 first)
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.Run(toks, RunOptions{NoLogits: true}); err != nil {
					b.Fatal(err)
				}
				ts = append(ts, time.Since(t0))
			}
			// the median decode, as make bench-anchor's llama.cpp side
			// reports it
			sec := benchutil.Median(ts).Seconds()
			b.ReportMetric(sec*1000, "decode-ms")
			b.ReportMetric(20/sec, "tok/s")
		})
	}
}

// benchThreadsEnv is the thread count of the benchmarks that read
// $LLDIFF_BENCH_THREADS (0, the default: physical cores). With 1, the CPU
// time a benchmark reports is one thread's work, which other processes on
// a loaded machine change far less than they change wall time.
func benchThreadsEnv() int {
	n, _ := strconv.Atoi(os.Getenv("LLDIFF_BENCH_THREADS"))
	return max(n, 0)
}

// cpuTime returns the CPU time (user + system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
