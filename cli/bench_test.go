package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/internal/benchutil"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

const (
	benchA = "The old king walked into the great hall and looked at his father, who was sitting by the fire and telling a long story to the"
	benchB = "The old queen walked into the great hall and looked at her mother, who was sitting by the fire and telling a long story to the"
)

// BenchmarkCompare measures compare end to end (both prompts, every
// component, the lens of every layer, neurons; model load excluded) against
// two bare decodes of the same prompts on a context without the eval
// callback, alternating the two. Reports compare/2decodes-ratio (target
// ≤ 1.25) and the model load time.
func BenchmarkCompare(b *testing.B) {
	benchCompare(b, "bench-cpu", models.Q4_0, "compare")
}

// BenchmarkCompareVocab256k is BenchmarkCompare on a model with Gemma 3's
// vocabulary size (gemma3-1b-shape: 26 layers, d_model 1152, 262144 tokens,
// Q8_0), where the lens of 25 layers × 2 prompts multiplies 50 rows by the
// 262144 × 1152 output matrix: compare-256k/2decodes-ratio.
func BenchmarkCompareVocab256k(b *testing.B) {
	benchCompare(b, "gemma3-1b-shape", models.Q8_0, "compare-256k")
}

// benchCompare times compare end to end against two bare decodes of its
// prompts on the preset's synthetic model, alternately, and reports the
// ratio as prefix/2decodes-ratio.
func benchCompare(b *testing.B, preset string, typ models.GGMLType, prefix string) {
	path, err := benchmodels.Synthetic(preset, typ)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	m, err := llamacpp.LoadModel(path, llamacpp.ModelParams{})
	if err != nil {
		b.Fatal(err)
	}
	load := time.Since(t0)
	defer m.Close()
	var flags modelFlags
	flags.Model, flags.KVType, flags.BOS = path, "f32", "auto"
	eng := flags.engine(m)
	copts := analysis.CompareOptions{
		Model: path, A: benchA, B: benchB, TopK: 5, LensK: 5, Neurons: 10, Positions: "last", Sort: "rel", Lens: models.LensNorm,
		Kinds: []models.Kind{models.ResidPost, models.ResidMid, models.AttnOut, models.MLPOut},
	}
	ida, _ := m.Tokenize(benchA, llamacpp.TokenizeOptions{})
	idb, _ := m.Tokenize(benchB, llamacpp.TokenizeOptions{})
	// the bare side creates its context each time, as compare does: the
	// context of the smallest size llama.cpp makes (256 tokens, F32 KV as
	// compare's), whose KV cache llama.cpp clears page by page (175 ms of
	// page faults for bench-cpu's 64 MiB on the CI's VM)
	decode2 := func() {
		bare, err := m.NewContext(llamacpp.ContextParams{NCtx: 256, KVType: "f32", NoCallback: true})
		if err != nil {
			b.Fatal(err)
		}
		defer bare.Close()
		for _, s := range [][]int32{ida, idb} {
			if _, err := bare.Run([][]int32{s}, llamacpp.RunOptions{NoLogits: true}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// warm up: page cache, weight repacking
	decode2()
	if _, err := analysis.Compare(eng, copts); err != nil {
		b.Fatal(err)
	}
	var tBare, tCmp []time.Duration
	benchutil.Rounds(b, compareRounds, func() {
		s := time.Now()
		decode2()
		mid := time.Now()
		if _, err := analysis.Compare(eng, copts); err != nil {
			b.Fatal(err)
		}
		tBare = append(tBare, mid.Sub(s))
		tCmp = append(tCmp, time.Since(mid))
	})
	b.ReportMetric(load.Seconds()*1000, "load-ms")
	b.ReportMetric(benchutil.Median(tCmp).Seconds()*1000, "compare-ms")
	b.ReportMetric(benchutil.Median(tBare).Seconds()*1000, "2decodes-ms")
	b.ReportMetric(benchutil.MedianRatio(tCmp, tBare), prefix+"/2decodes-ratio")
}

// compareRounds is the fewest rounds benchCompare times: fewer than
// benchutil.MinRounds, as a round of the 256k-vocabulary model takes
// seconds.
const compareRounds = 9

// BenchmarkCompareRSS runs bin/lldiff compare on a Llama-2-7B-shaped Q4_0
// synthetic model (written once, 3.5 GiB) and reports peak RSS against the
// file size + 1 GiB (target ≤ 1). It needs bin/lldiff (make bench builds it)
// and GNU time; set LLDIFF_BENCH_7B=0 to skip it on small machines.
func BenchmarkCompareRSS(b *testing.B) {
	if os.Getenv("LLDIFF_BENCH_7B") == "0" || runtime.GOOS != "linux" {
		b.Skip("LLDIFF_BENCH_7B=0 or not linux")
	}
	bin, err := filepath.Abs("../bin/lldiff")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Skip("bin/lldiff not built (make bench builds it)")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		b.Skip("GNU time not installed")
	}
	path, err := benchmodels.Synthetic("llama2-7b", models.Q4_0)
	if err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	for range b.N {
		cmd := exec.Command("/usr/bin/time", "-f", "maxrss_kb=%M", bin, "compare", "-m", path, "--json", benchA, benchB)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		s := string(out)
		i := strings.LastIndex(s, "maxrss_kb=")
		kb, err := strconv.ParseFloat(strings.TrimSpace(s[i+len("maxrss_kb="):]), 64)
		if err != nil {
			b.Fatal(err)
		}
		rss := kb * 1024
		b.ReportMetric(rss/(1<<30), "peak-rss-GiB")
		b.ReportMetric(float64(st.Size())/(1<<30), "file-GiB")
		b.ReportMetric(rss/(float64(st.Size())+(1<<30)), "rss/filesize+1GiB-ratio")
		// the tighter bound, printed for information (see
		// docs/performance.md, Limits)
		b.ReportMetric(rss/(float64(st.Size())+(1<<29)), "rss/filesize+0.5GiB-ratio")
	}
}

// BenchmarkCaptureLongRSS runs bin/lldiff capture of resid_post, attn_out
// and mlp_out at every layer of the Llama-2-7B-shaped Q4_0 model (as
// BenchmarkCompareRSS) on a prompt of $LLDIFF_BENCH_LONG tokens (default
// 2048), and reports its peak RSS and wall time. The rows stream to their
// files one ubatch at a time, so the peak is the model, the KV cache (F32:
// 2 × n_layer × n_ctx × d_model × 4 bytes, 2 GiB at 2048 tokens) and about
// one ubatch's rows and compute buffers: longcapture-rss/file+kv+1GiB-ratio
// (target ≤ 1). One run: a peak does not change between runs, and each
// takes minutes. Skipped like BenchmarkCompareRSS.
func BenchmarkCaptureLongRSS(b *testing.B) {
	if os.Getenv("LLDIFF_BENCH_7B") == "0" || runtime.GOOS != "linux" {
		b.Skip("LLDIFF_BENCH_7B=0 or not linux")
	}
	bin, err := filepath.Abs("../bin/lldiff")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		b.Skip("bin/lldiff not built (make bench builds it)")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		b.Skip("GNU time not installed")
	}
	n := 2048
	if s := os.Getenv("LLDIFF_BENCH_LONG"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 2 {
			b.Fatalf("LLDIFF_BENCH_LONG=%q: give a token count of at least 2", s)
		}
	}
	preset := "llama2-7b"
	if s := os.Getenv("LLDIFF_BENCH_LONG_PRESET"); s != "" {
		preset = s
	}
	path, err := benchmodels.Synthetic(preset, models.Q4_0)
	if err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	// BOS and n−1 times " the", one token each in the Llama-2 vocabulary
	// (checked against index.json below)
	prompt := filepath.Join(b.TempDir(), "prompt.txt")
	if err := os.WriteFile(prompt, []byte("the"+strings.Repeat(" the", n-2)), 0o644); err != nil {
		b.Fatal(err)
	}
	// go test calls a benchmark once with b.N = 1 before the real run:
	// the capture runs once per process and both calls report it
	longCapture.Do(func() {
		out := filepath.Join(b.TempDir(), "acts")
		cmd := exec.Command("/usr/bin/time", "-f", "maxrss_kb=%M wall_s=%e", bin, "capture", "-m", path, "--json",
			"--hooks", "resid_post,attn_out,mlp_out", "--prompt-file", prompt, "-o", out)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if longCapture.err = cmd.Run(); longCapture.err != nil {
			longCapture.err = fmt.Errorf("%v\n%s", longCapture.err, stderr.String())
			return
		}
		defer os.RemoveAll(out)
		var idx CaptureIndex
		if longCapture.err = json.Unmarshal([]byte(stdout.String()), &idx); longCapture.err != nil {
			return
		}
		if len(idx.Tokens) != n {
			longCapture.err = fmt.Errorf("the prompt gave %d tokens, want %d", len(idx.Tokens), n)
			return
		}
		longCapture.files = len(idx.Files)
		s := stderr.String()
		i := strings.LastIndex(s, "maxrss_kb=")
		if _, err := fmt.Sscanf(s[max(i, 0):], "maxrss_kb=%f wall_s=%f", &longCapture.rss, &longCapture.wall); err != nil {
			longCapture.err = fmt.Errorf("reading GNU time's output %q: %v", s, err)
		}
		longCapture.rss *= 1024
	})
	if longCapture.err != nil {
		b.Fatal(longCapture.err)
	}
	rss, wall := longCapture.rss, longCapture.wall
	spec, err := models.SynthPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	nCtx := models.RoundCtx(n)
	kvHeads := spec.NHeadKV
	if kvHeads == 0 {
		kvHeads = spec.NHead
	}
	kv := float64(2*spec.NLayer*nCtx*spec.DModel/spec.NHead*kvHeads) * 4
	b.ReportMetric(rss/(1<<30), "peak-rss-GiB")
	b.ReportMetric(float64(st.Size())/(1<<30), "file-GiB")
	b.ReportMetric(kv/(1<<30), "kv-GiB")
	b.ReportMetric(wall, "wall-s")
	b.ReportMetric(float64(longCapture.files), "files")
	b.ReportMetric(rss/(float64(st.Size())+kv+(1<<30)), "longcapture-rss/file+kv+1GiB-ratio")
}

// longCapture is BenchmarkCaptureLongRSS's one run.
var longCapture struct {
	sync.Once
	rss, wall float64
	files     int
	err       error
}
