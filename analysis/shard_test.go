package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/jsoncmp"
	"github.com/lldiff/lldiff/models"
)

func TestShardRange(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 100} {
		for _, N := range []int{1, 3, 16} {
			next := 0
			for k := range N {
				lo, hi := Shard{k, N}.Range(n)
				if lo != next || hi < lo || hi-lo > n/N+1 || hi-lo < n/N {
					t.Fatalf("n=%d N=%d: shard %d is [%d,%d), expected to start at %d with %d or %d items", n, N, k, lo, hi, next, n/N, n/N+1)
				}
				next = hi
			}
			if next != n {
				t.Fatalf("n=%d N=%d: shards end at %d", n, N, next)
			}
		}
	}
	for _, bad := range []string{"3/3", "-1/2", "1/0", "1", "a/b", "1/2/3"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) succeeded", bad)
		}
	}
	if s, err := ParseShard(" 2/16 "); err != nil || s != (Shard{2, 16}) {
		t.Errorf("ParseShard(2/16) = %v, %v", s, err)
	}
}

func TestShardFromEnv(t *testing.T) {
	cases := []struct {
		env    map[string]string
		shards int
		want   Shard
		ok     bool
		err    string
	}{
		{map[string]string{}, 0, Shard{}, false, ""},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "16"}, 0, Shard{5, 16}, true, ""},
		// --array=1-3: IDs 1..3 are shards 0..2
		{map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, 0, Shard{2, 3}, true, ""},
		// --array=0-10:5 (0, 5, 10)
		{map[string]string{"SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "5"}, 0, Shard{2, 3}, true, ""},
		// --array=0,7: not a range
		{map[string]string{"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2"}, 0, Shard{}, true, "sbatch --array=0-1"},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "3", "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_COUNT": "2"}, 0, Shard{}, true, "not a plain range"},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "15", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "15", "SLURM_ARRAY_TASK_COUNT": "16"}, 0, Shard{15, 16}, true, ""},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0"}, 0, Shard{}, true, "SLURM_ARRAY_TASK_COUNT"},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, 3, Shard{}, true, "leave --shards out"},
		{map[string]string{"JOB_COMPLETION_INDEX": "2"}, 4, Shard{2, 4}, true, ""},
		{map[string]string{"JOB_COMPLETION_INDEX": "2"}, 0, Shard{}, true, "--shards N"},
		{map[string]string{"JOB_COMPLETION_INDEX": "4"}, 4, Shard{}, true, "does not exist"},
	}
	for i, c := range cases {
		s, from, ok, err := ShardFromEnv(func(k string) string { return c.env[k] }, c.shards)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("case %d: error %v, want one saying %q", i, err, c.err)
			}
		case err != nil || ok != c.ok || s != c.want:
			t.Errorf("case %d: %v %v %v, want %v %v", i, s, ok, err, c.want, c.ok)
		case ok && !strings.Contains(from, c.want.String()):
			t.Errorf("case %d: source %q does not name shard %s", i, from, c.want)
		}
	}
}

// runShards runs o as n shards, writes each part, merges them (in reverse
// order: the merge must not depend on it) and returns the merged part's
// directory.
func runShards(t *testing.T, e models.Engine, o ContrastOptions, n int) (merged string, parts []string) {
	t.Helper()
	root := t.TempDir()
	for k := range n {
		p, err := ContrastShard(e, o, Shard{k, n})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, fmt.Sprintf("part-%d", k))
		os.Mkdir(dir, 0o755)
		if err := p.Write(func(name string) string { return filepath.Join(dir, name) }); err != nil {
			t.Fatal(err)
		}
		parts = append([]string{dir}, parts...)
	}
	merged = filepath.Join(root, "merged")
	os.Mkdir(merged, 0o755)
	if _, _, err := MergeStats(parts, func(name string) string { return filepath.Join(merged, name) }); err != nil {
		t.Fatal(err)
	}
	return merged, parts
}

// shardTol compares a merged result with an unsharded one. The statistics
// are computed by the same code from the same rows in the same order; the
// rows differ only where an engine's activations depend on the other
// sequences of a batch (llama.cpp: at about 1e-6 of their norm, see
// contrast.RoundingLevel; the test model's activations have norms below
// 10, so 1e-5 absolute), and 1e-4 relative leaves room for that to grow
// through ratios such as the separation (measured on stories260K: at most
// 7e-5 relative, on a projection near 0, 1.1e-6 absolute). A merge that
// lost, repeated or reordered a shard moves the means by a whole prompt's
// share: far more.
var shardTol = jsoncmp.Options{Rel: 1e-4, Abs: 1e-5, Skip: []string{"throughput.seconds", "throughput.prompts_per_second", "throughput.tokens_per_second"}}

// TestContrastShardsMergeToUnsharded checks the promise: a contrast
// run as 3 shards and merged gives the document of one unsharded run
// (numbers within shardTol, everything else equal), paired and unpaired,
// on every engine; and the merged moments are the one-pass moments of all
// rows.
func TestContrastShardsMergeToUnsharded(t *testing.T) {
	unpaired := func() *contrast.Dataset {
		ds := shePairs()
		ds.Paired = false
		ds.B = ds.B[:4] // A 6 prompts, B 4: the sets split differently
		return ds
	}
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		for _, c := range []struct {
			name string
			ds   *contrast.Dataset
			pos  RowSpec
			spec string
		}{
			{"paired", shePairs(), RowSpec{Indices: []int{-1}}, "last"},
			{"unpaired", unpaired(), RowSpec{Indices: []int{-1}}, "last"},
			{"all positions", shePairs(), RowSpec{All: true}, "all"},
		} {
			t.Run(c.name, func(t *testing.T) {
				o := contrastOpts()
				o.Dataset, o.Positions, o.Spec = c.ds, c.pos, c.spec
				want, err := Contrast(e, o)
				if err != nil {
					t.Fatal(err)
				}
				merged, _ := runShards(t, e, o, 3)
				got, m, err := ContrastFromStats(merged, e, ContrastOptions{LensK: o.LensK, Lens: o.Lens})
				if err != nil {
					t.Fatal(err)
				}
				wj, _ := json.Marshal(want)
				gj, _ := json.Marshal(got)
				diffs, err := jsoncmp.Compare(wj, gj, shardTol, 10)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range diffs {
					t.Error("merged vs unsharded:", d)
				}
				if want.Throughput.Tokens == 0 || m.Throughput.Sequences != want.Throughput.Sequences {
					t.Errorf("throughput %+v vs %+v", m.Throughput, want.Throughput)
				}
				// without the model: the same document, less the lens
				noLens, _, err := ContrastFromStats(merged, nil, ContrastOptions{Lens: o.Lens})
				if err != nil {
					t.Fatal(err)
				}
				if len(noLens.Components) != len(want.Components) || noLens.Components[0].Lens != nil || noLens.Components[0].Hook != want.Components[0].Hook {
					t.Errorf("without the model: %d components, first %s", len(noLens.Components), noLens.Components[0].Hook)
				}
				checkMergedMoments(t, e, o, merged)
			})
		}
	})
}

// checkMergedMoments compares the merged part's moments (Chan over 3
// shards) with those of a single one-shard run (one Welford pass) and with
// the two-pass mean and variance of the merged rows. Tolerance 1e-9
// relative to the scale of the activations: float64 arithmetic over a few
// dozen float32 rows rounds at 1e-15; the activations themselves may
// differ between the runs by batch rounding, which is float32 and is
// covered by comparing against the merged rows' own two-pass values at
// 1e-9 and against the one-shard run at the same tolerance as the report.
func checkMergedMoments(t *testing.T, e models.Engine, o ContrastOptions, merged string) {
	t.Helper()
	single, err := ContrastShard(e, o, Shard{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range single.Hooks[:3] {
		d, err := readHookFile(filepath.Join(merged, hookFile(h.Name())))
		if err != nil {
			t.Fatal(err)
		}
		for s, ref := range []*contrast.Moments{single.MA[h], single.MB[h]} {
			got, rows := d.mom[s], d.set[s]
			if got.N != ref.N || int(got.N) != rows.N {
				t.Fatalf("%s set %d: merged count %d, single run %d, rows %d", h.Name(), s, got.N, ref.N, rows.N)
			}
			// two-pass over the merged rows
			mean := make([]float64, rows.D)
			for i := range rows.N {
				for j, v := range rows.Row(i) {
					mean[j] += float64(v) / float64(rows.N)
				}
			}
			vr := make([]float64, rows.D)
			for i := range rows.N {
				for j, v := range rows.Row(i) {
					vr[j] += (float64(v) - mean[j]) * (float64(v) - mean[j]) / float64(rows.N-1)
				}
			}
			scale := 0.0
			for _, v := range rows.Data {
				scale = math.Max(scale, math.Abs(float64(v)))
			}
			gv, rv := got.Variance(), ref.Variance()
			for j := range mean {
				if math.Abs(got.Mean[j]-mean[j]) > 1e-9*scale || math.Abs(gv[j]-vr[j]) > 1e-9*scale*scale {
					t.Fatalf("%s set %d col %d: merged mean %g var %g, two-pass %g %g", h.Name(), s, j, got.Mean[j], gv[j], mean[j], vr[j])
				}
				if math.Abs(got.Mean[j]-ref.Mean[j]) > shardTol.Rel*scale || math.Abs(gv[j]-rv[j]) > shardTol.Rel*scale*scale {
					t.Fatalf("%s set %d col %d: merged mean %g var %g, single run %g %g", h.Name(), s, j, got.Mean[j], gv[j], ref.Mean[j], rv[j])
				}
			}
		}
	}
}

// TestMergeRefuses checks that parts which do not belong together, a
// missing or repeated shard and a damaged part are refused with an error
// naming the part and the problem.
func TestMergeRefuses(t *testing.T) {
	e := openReference(t, stories(t))
	o := contrastOpts()
	o.LensK = 0
	_, parts := runShards(t, e, o, 3) // parts in reverse order: 2, 1, 0
	root := t.TempDir()
	write := func(name string, p *StatsPart) string {
		dir := filepath.Join(root, name)
		os.Mkdir(dir, 0o755)
		if err := p.Write(func(n string) string { return filepath.Join(dir, n) }); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	n := 0
	other := func(mod func(o *ContrastOptions), s Shard, edit func(m *StatsManifest)) string {
		oo := contrastOpts()
		oo.LensK = 0
		if mod != nil {
			mod(&oo)
		}
		p, err := ContrastShard(e, oo, s)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(&p.Manifest)
		}
		n++
		return write(fmt.Sprintf("other-%d", n), p)
	}
	fewer := other(func(o *ContrastOptions) { o.Dataset.A, o.Dataset.B = o.Dataset.A[:5], o.Dataset.B[:5] }, Shard{1, 3}, nil)
	split4 := other(nil, Shard{1, 4}, nil)
	allPos := other(nil, Shard{1, 3}, func(m *StatsManifest) { m.Options.Positions = "all" })
	otherModel := other(nil, Shard{1, 3}, func(m *StatsManifest) { m.Model.SHA256 = strings.Repeat("0", 64) })
	damaged := filepath.Join(root, "damaged")
	os.CopyFS(damaged, os.DirFS(parts[1]))
	f := filepath.Join(damaged, hookFile("blocks.0.hook_resid_post"))
	b, _ := os.ReadFile(f)
	os.WriteFile(f, b[:len(b)-3], 0o644)
	unfinished := t.TempDir()
	cases := []struct {
		name  string
		parts []string
		want  []string
	}{
		{"missing", []string{parts[0], parts[2]}, []string{"shard(s) 1 of 3 are missing"}},
		{"repeated", []string{parts[0], parts[1], parts[2], parts[1]}, []string{"shard 1/3 is in both", parts[1]}},
		{"dataset", []string{parts[0], fewer, parts[2]}, []string{fewer, "dataset"}},
		{"N", []string{parts[0], split4, parts[2]}, []string{split4, "shard count N"}},
		{"options", []string{parts[0], allPos, parts[2]}, []string{allPos, "options", `"positions":"all"`}},
		{"model", []string{parts[0], otherModel, parts[2]}, []string{otherModel, "model sha256"}},
		{"damaged", []string{parts[0], damaged, parts[2]}, []string{damaged, "bytes, the manifest says"}},
		{"unfinished", []string{parts[0], unfinished, parts[2]}, []string{unfinished, "did not finish"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			_, _, err := MergeStats(c.parts, func(n string) string { return filepath.Join(out, n) })
			if err == nil {
				t.Fatal("merge succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// a part alone is not a result
	if _, _, err := ContrastFromStats(parts[0], nil, ContrastOptions{}); err == nil || !strings.Contains(err.Error(), "merge the parts") {
		t.Errorf("from-stats of one part of 3: %v", err)
	}
}

// TestMergeOrderIndependent merges the same parts in two orders: the
// merged parts are byte for byte the same (parts are put back in shard
// order before anything is combined).
func TestMergeOrderIndependent(t *testing.T) {
	e := openReference(t, stories(t))
	o := contrastOpts()
	o.LensK = 0
	merged, parts := runShards(t, e, o, 3) // merged from parts 2, 1, 0
	other := t.TempDir()
	if _, _, err := MergeStats([]string{parts[1], parts[2], parts[0]}, func(n string) string { return filepath.Join(other, n) }); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(merged)
	if len(ents) < 2 {
		t.Fatalf("%d files merged", len(ents))
	}
	for _, en := range ents {
		a, _ := os.ReadFile(filepath.Join(merged, en.Name()))
		b, err := os.ReadFile(filepath.Join(other, en.Name()))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s differs between merge orders (%v)", en.Name(), err)
		}
	}
}
