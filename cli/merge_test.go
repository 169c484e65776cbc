package cli

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/jsoncmp"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// shardPrompts writes paired prompt files of n pairs that differ in the
// pronoun at the end.
func shardPrompts(t *testing.T, n int) (a, b string) {
	dir := t.TempDir()
	var as, bs []string
	names := []string{"Lily", "Tom", "Sue", "Ben", "Mia", "Sam", "Max", "Zoe", "Tim"}
	for i := range n {
		s := fmt.Sprintf("One day %s went to the park with a ball. Then", names[i%len(names)])
		as, bs = append(as, s+" she"), append(bs, s+" he")
	}
	a, b = filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	os.WriteFile(a, []byte(strings.Join(as, "\n")+"\n"), 0o644)
	os.WriteFile(b, []byte(strings.Join(bs, "\n")+"\n"), 0o644)
	return a, b
}

// contrastTol: see analysis.shardTol. llama.cpp's activations of a
// sequence depend on its batch neighbours at about 1e-6 of their norm;
// a shard's batches differ from the unsharded run's.
var contrastTol = jsoncmp.Options{Rel: 1e-4, Abs: 1e-5, Skip: []string{
	"throughput.seconds", "throughput.prompts_per_second", "throughput.tokens_per_second",
	"vectors.dir", "vectors.files[].bytes", "control_vector.file",
}}

// TestContrastShardedCLI runs the whole sharded workflow through the
// command line on a real model: three shards (one from --shard, one from
// Slurm's variables, one from Kubernetes'), a merge of the parts given out
// of order, and contrast --from-stats, whose JSON, vectors and control
// vector must equal an unsharded run's. A rerun of a finished shard is
// skipped; a part of another run is not overwritten.
func TestContrastShardedCLI(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	a, b := shardPrompts(t, 7)
	dir := t.TempDir()
	common := []string{"contrast", "-m", model, "--a", a, "--b", b, "--paired", "--lens-k", "3"}
	want, _, err := run(t, false, append(common, "--json", "--save-vectors", filepath.Join(dir, "vec1"), "--export-cvec", filepath.Join(dir, "one.gguf"))...)
	if err != nil {
		t.Fatal(err)
	}
	part := func(k int) string { return filepath.Join(dir, fmt.Sprintf("part-%d", k)) }
	// shard 0 from the flag
	_, stderr, err := run(t, false, append(common, "--shard", "0/3", "--shard-out", part(0))...)
	if err != nil || !strings.Contains(stderr, "shard 0/3 (--shard)") {
		t.Fatalf("shard 0: %v %s", err, stderr)
	}
	// shard 1 from a Slurm array --array=5-7
	t.Setenv("SLURM_ARRAY_TASK_ID", "6")
	t.Setenv("SLURM_ARRAY_TASK_MIN", "5")
	t.Setenv("SLURM_ARRAY_TASK_COUNT", "3")
	_, stderr, err = run(t, false, append(common, "--shard-out", part(1))...)
	if err != nil || !strings.Contains(stderr, "shard 1/3 from Slurm") {
		t.Fatalf("shard 1: %v %s", err, stderr)
	}
	os.Unsetenv("SLURM_ARRAY_TASK_ID")
	// shard 2 from a Kubernetes Indexed Job
	t.Setenv("JOB_COMPLETION_INDEX", "2")
	_, stderr, err = run(t, false, append(common, "--shards", "3", "--shard-out", part(2))...)
	if err != nil || !strings.Contains(stderr, "shard 2/3 from Kubernetes") {
		t.Fatalf("shard 2: %v %s", err, stderr)
	}
	os.Unsetenv("JOB_COMPLETION_INDEX")
	// a rerun is skipped, and leaves the part as it was
	before, _ := os.ReadFile(filepath.Join(part(2), "manifest.json"))
	_, stderr, err = run(t, false, append(common, "--shard", "2/3", "--shard-out", part(2))...)
	after, _ := os.ReadFile(filepath.Join(part(2), "manifest.json"))
	if err != nil || !strings.Contains(stderr, "skipped") || string(before) != string(after) {
		t.Fatalf("rerun: %v %s", err, stderr)
	}
	// the part of another shard is not replaced
	if _, _, err = run(t, false, append(common, "--shard", "1/3", "--shard-out", part(2))...); err == nil || !strings.Contains(err.Error(), "another run") {
		t.Fatalf("writing shard 1 over shard 2: %v", err)
	}
	merged := filepath.Join(dir, "merged")
	if out, _, err := run(t, false, "merge", "-o", merged, part(2), part(0), part(1)); err != nil || !strings.Contains(out, "merged 3 part(s)") {
		t.Fatalf("merge: %v %s", err, out)
	}
	got, _, err := run(t, false, "contrast", "--from-stats", merged, "-m", model, "--lens-k", "3", "--json",
		"--save-vectors", filepath.Join(dir, "vec2"), "--export-cvec", filepath.Join(dir, "two.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := jsoncmp.Compare([]byte(want), []byte(got), contrastTol, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error("from-stats vs unsharded:", d)
	}
	// the vectors and the control vector, value by value (1e-4 of the
	// vector's largest element: the same batch rounding as above)
	ents, _ := os.ReadDir(filepath.Join(dir, "vec1"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".npy") {
			continue
		}
		x, err1 := readNpyFile(filepath.Join(dir, "vec1", e.Name()))
		y, err2 := readNpyFile(filepath.Join(dir, "vec2", e.Name()))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", e.Name(), err1, err2)
		}
		closeVec(t, e.Name(), x, y)
	}
	c1, err1 := contrast.ReadControlVector(filepath.Join(dir, "one.gguf"))
	c2, err2 := contrast.ReadControlVector(filepath.Join(dir, "two.gguf"))
	if err1 != nil || err2 != nil || len(c1.Directions) != len(c2.Directions) || len(c1.Directions) == 0 {
		t.Fatalf("control vectors: %v %v", err1, err2)
	}
	for l, v := range c1.Directions {
		closeVec(t, fmt.Sprint("direction.", l), v, c2.Directions[l])
	}
	// without the model: no lens, and a note that says why
	out, stderr, err := run(t, false, "contrast", "--from-stats", merged)
	if err != nil || !strings.Contains(stderr, "no logit lens") || !strings.Contains(out, "components ranked by separation") {
		t.Fatalf("from-stats without -m: %v %s %s", err, stderr, out)
	}
	// a missing part is named
	if _, _, err := run(t, false, "merge", "-o", filepath.Join(dir, "m2"), part(0), part(2)); err == nil || !strings.Contains(err.Error(), "shard(s) 1 of 3 are missing") {
		t.Errorf("merge without shard 1: %v", err)
	}
}

func readNpyFile(path string) ([]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, data, err := npy.Read(f)
	return data, err
}

func closeVec(t *testing.T, name string, x, y []float32) {
	t.Helper()
	if len(x) != len(y) {
		t.Fatalf("%s: %d vs %d values", name, len(x), len(y))
	}
	scale := 0.0
	for _, v := range x {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range x {
		if math.Abs(float64(x[i]-y[i])) > 1e-4*scale {
			t.Fatalf("%s[%d]: %g vs %g", name, i, x[i], y[i])
		}
	}
}

func TestShardFlagErrors(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	a, b := shardPrompts(t, 3)
	common := []string{"contrast", "-m", model, "--a", a, "--b", b, "--paired"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--shard", "1/3"}, "--shard-out"},
		{[]string{"--shard", "3/3", "--shard-out", t.TempDir()}, "does not exist"},
		{[]string{"--shard-out", t.TempDir()}, "no scheduler set a shard"},
		{[]string{"--shard", "0/2", "--shard-out", t.TempDir(), "--export-cvec", "x.gguf"}, "--from-stats"},
		{[]string{"--from-stats", t.TempDir()}, "drop --a"},
	} {
		_, _, err := run(t, false, append(common, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
