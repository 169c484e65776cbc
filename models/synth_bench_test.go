package models

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// BenchmarkSynth7B writes the Llama-2-7B-shaped Q4_0 synthetic model
// (3.5 GiB) into a temporary directory and reports the time against the
// 2-minute target (synth7b/120s-ratio ≤ 1). Set LLDIFF_BENCH_7B=0 to skip
// it where the disk is small.
func BenchmarkSynth7B(b *testing.B) {
	if os.Getenv("LLDIFF_BENCH_7B") == "0" {
		b.Skip("LLDIFF_BENCH_7B=0")
	}
	spec, err := SynthPreset("llama2-7b")
	if err != nil {
		b.Fatal(err)
	}
	spec.VocabPath = testmodels.Path(b, testmodels.VocabLlamaSPM)
	dir := b.TempDir()
	var total time.Duration
	for i := range b.N {
		p := filepath.Join(dir, "7b.gguf")
		t0 := time.Now()
		if err := WriteSynthetic(p, spec); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		if i == 0 {
			st, _ := os.Stat(p)
			b.SetBytes(st.Size())
		}
		os.Remove(p)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/file")
	b.ReportMetric(total.Seconds()/float64(b.N)/120, "synth7b/120s-ratio")
}
