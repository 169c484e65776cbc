// Command anchorpair times lldiff's bare decode and llama.cpp's own, built
// the way llama.cpp builds itself (scripts/anchor), in alternating
// processes on the same model files, and writes what make bench's table
// compares: on a shared machine two runs of the same decode minutes apart
// differ by more than the 5 % the target allows, so a single run of each
// side says nothing; the median of per-round ratios of back-to-back runs
// does.
//
// usage: anchorpair -threads N [-anchor build/anchor/lldiff-anchor]
// [-lldiff build/anchor/llamacpp.test] [-dir $TMPDIR/lldiff-bench]
// [-types "Q4_0 Q4_K_M Q8_0 F16"] [-rounds 5] [-out bench/anchor.txt]
//
// Each round runs llama.cpp (F32 KV cache, as lldiff decodes) and lldiff's
// BenchmarkDecodeTypes for one type, one after the other, in an order that
// alternates between rounds; each process decodes the 20-token prompt 10
// times after a warm-up and reports its median. The output file holds, per
// type, "TYPE f32 TOK/S" and "TYPE f16 TOK/S" (llama.cpp's medians; the F16
// KV cache run once, for information) and "paired TYPE RATIO LLDIFF_TOK/S"
// (the median of lldiff's ÷ llama.cpp's tokens/s over the rounds).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/internal/benchutil"
)

func main() {
	anchor := flag.String("anchor", "build/anchor/lldiff-anchor", "llama.cpp's side (scripts/anchor)")
	lldiff := flag.String("lldiff", "build/anchor/llamacpp.test", "lldiff's side: the llamacpp package's test binary (run in ./llamacpp)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "lldiff-bench"), "folder of the bench-cpu-TYPE.gguf files")
	types := flag.String("types", "Q4_0 Q4_K_M Q8_0 F16", "weight types")
	rounds := flag.Int("rounds", 5, "alternating rounds per type")
	threads := flag.Int("threads", 0, "llama.cpp's threads: lldiff's default, the physical cores (scripts/cores)")
	out := flag.String("out", "bench/anchor.txt", "where the figures go")
	flag.Parse()
	if *rounds < 1 || *threads < 1 {
		fail(fmt.Errorf("-rounds and -threads must be at least 1 (-threads: the physical cores, go run ./scripts/cores)"))
	}
	for _, p := range []*string{anchor, lldiff} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			fail(err)
		}
		*p = abs
	}
	var lines []string
	fmt.Printf("%-8s %-44s %s\n", "weights", "per round: lldiff ÷ llama.cpp tokens/s", "median")
	for _, typ := range strings.Fields(*types) {
		model := filepath.Join(*dir, "bench-cpu-"+typ+".gguf")
		if _, err := os.Stat(model); err != nil {
			fail(fmt.Errorf("%v: make bench-anchor writes the models first (lldiff synth --preset bench-cpu --type %s)", err, typ))
		}
		var ratios, lldiffs, llamas []float64
		for r := range *rounds {
			var a, l float64
			var err error
			llama := func() error { a, err = runAnchor(*anchor, model, *threads, "f32"); return err }
			ours := func() error { l, err = runLLDiff(*lldiff, typ); return err }
			first, second := llama, ours
			if r%2 == 1 {
				// lldiff first in odd rounds: a drift in the machine's
				// speed during the run favours neither side
				first, second = ours, llama
			}
			if first() != nil || second() != nil {
				fail(err)
			}
			ratios = append(ratios, l/a)
			lldiffs = append(lldiffs, l)
			llamas = append(llamas, a)
		}
		a16, err := runAnchor(*anchor, model, *threads, "f16")
		if err != nil {
			fail(err)
		}
		var per []string
		for _, r := range ratios {
			per = append(per, fmt.Sprintf("%.3f", r))
		}
		fmt.Printf("%-8s %-44s %.3f (lldiff %.1f, llama.cpp %.1f tokens/s)\n", typ, strings.Join(per, " "), benchutil.Median(ratios), benchutil.Median(lldiffs), benchutil.Median(llamas))
		lines = append(lines,
			fmt.Sprintf("%s f32 %.1f", typ, benchutil.Median(llamas)),
			fmt.Sprintf("%s f16 %.1f", typ, a16),
			fmt.Sprintf("paired %s %.4f %.1f", typ, benchutil.Median(ratios), benchutil.Median(lldiffs)))
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fail(err)
	}
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		fail(err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "anchorpair:", err)
	os.Exit(1)
}

// anchorTokS is lldiff-anchor's last field: "123.4 tokens/s".
var anchorTokS = regexp.MustCompile(`\t([0-9.]+) tokens/s\s*$`)

func runAnchor(bin, model string, threads int, kv string) (float64, error) {
	o, err := run(bin, model, "20", "10", strconv.Itoa(threads), kv)
	if err != nil {
		return 0, err
	}
	m := anchorTokS.FindSubmatch(o)
	if m == nil {
		return 0, fmt.Errorf("%s printed no tokens/s: %q", bin, o)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// lldiffTokS is BenchmarkDecodeTypes's tokens/s metric.
var lldiffTokS = regexp.MustCompile(`([0-9.]+) tok/s`)

func runLLDiff(bin, typ string) (float64, error) {
	args := []string{"-test.run=NONE", "-test.bench=^BenchmarkDecodeTypes$/^" + regexp.QuoteMeta(typ) + "$", "-test.benchtime=10x"}
	cmd := exec.Command(bin, args...)
	cmd.Dir = "llamacpp" // a package's test binary runs in its folder, as go test runs it
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, buf.Bytes())
	}
	m := lldiffTokS.FindSubmatch(buf.Bytes())
	if m == nil {
		return 0, fmt.Errorf("%s printed no tok/s:\n%s", bin, buf.Bytes())
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func run(bin string, args ...string) ([]byte, error) {
	var buf, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &buf, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, errb.Bytes())
	}
	return buf.Bytes(), nil
}
