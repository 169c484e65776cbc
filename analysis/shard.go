package analysis

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/models"
)

// Shard is shard K (from 0) of N of a dataset.
type Shard struct{ K, N int }

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.K, s.N) }

// Range returns the items [lo, hi) of n that shard s takes: block K of N
// contiguous blocks by line index, [⌊K·n/N⌋, ⌊(K+1)·n/N⌋), so that the
// shards put back in order of K are the whole file in order. Block sizes
// differ by at most one; a shard of a set smaller than N may be empty.
func (s Shard) Range(n int) (lo, hi int) {
	return int(int64(s.K) * int64(n) / int64(s.N)), int(int64(s.K+1) * int64(n) / int64(s.N))
}

// ParseShard parses "K/N" with 0 <= K < N.
func ParseShard(spec string) (Shard, error) {
	k, n, ok := strings.Cut(strings.TrimSpace(spec), "/")
	ki, err1 := strconv.Atoi(strings.TrimSpace(k))
	ni, err2 := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("--shard %q: give K/N, shard K (counted from 0) of N, such as 0/16", spec)
	}
	return checkShard(Shard{ki, ni}, "--shard "+spec)
}

func checkShard(s Shard, what string) (Shard, error) {
	switch {
	case s.N < 1:
		return s, fmt.Errorf("%s: N = %d shards; there must be at least one", what, s.N)
	case s.K < 0 || s.K >= s.N:
		return s, fmt.Errorf("%s: shard %d of %d does not exist: shards are counted from 0 to %d", what, s.K, s.N, s.N-1)
	}
	return s, nil
}

// ShardFromEnv finds the shard a scheduler assigned to this process: a
// Slurm job array sets SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN,
// SLURM_ARRAY_TASK_COUNT (and SLURM_ARRAY_TASK_STEP), giving
// K = (ID − MIN)/STEP of N = COUNT; a Kubernetes Indexed Job sets
// JOB_COMPLETION_INDEX = K, and N is shards (the Job's completions, which
// it does not export). It returns the shard, a sentence saying where it
// came from, and ok = false when neither scheduler set anything.
func ShardFromEnv(getenv func(string) string, shards int) (s Shard, from string, ok bool, err error) {
	atoi := func(name string) (int, error) {
		v := getenv(name)
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a number", name, v)
		}
		return n, nil
	}
	if getenv("SLURM_ARRAY_TASK_ID") != "" {
		id, err := atoi("SLURM_ARRAY_TASK_ID")
		if err != nil {
			return s, "", true, err
		}
		lo, err := atoi("SLURM_ARRAY_TASK_MIN")
		if err != nil {
			return s, "", true, err
		}
		n, err := atoi("SLURM_ARRAY_TASK_COUNT")
		if err != nil {
			return s, "", true, err
		}
		step := 1
		if getenv("SLURM_ARRAY_TASK_STEP") != "" {
			if step, err = atoi("SLURM_ARRAY_TASK_STEP"); err != nil {
				return s, "", true, err
			}
		}
		if step < 1 || (id-lo)%step != 0 {
			return s, "", true, fmt.Errorf("SLURM_ARRAY_TASK_ID=%d with MIN=%d and STEP=%d does not map to a shard: submit a plain range, sbatch --array=0-%d", id, lo, step, n-1)
		}
		if getenv("SLURM_ARRAY_TASK_MAX") != "" {
			hi, err := atoi("SLURM_ARRAY_TASK_MAX")
			if err != nil {
				return s, "", true, err
			}
			if (hi-lo)/step+1 != n {
				return s, "", true, fmt.Errorf("the Slurm array is not a plain range (SLURM_ARRAY_TASK_MIN=%d, MAX=%d, COUNT=%d): its task ids do not number the shards; submit --array=0-N-1 (tasks whose part is complete are skipped), or pass --shard K/N", lo, hi, n)
			}
		}
		if shards > 0 && shards != n {
			return s, "", true, fmt.Errorf("--shards %d, but the Slurm array has %d tasks (SLURM_ARRAY_TASK_COUNT): leave --shards out under Slurm", shards, n)
		}
		s = Shard{(id - lo) / step, n}
		from := fmt.Sprintf("shard %s from Slurm: SLURM_ARRAY_TASK_ID=%d, SLURM_ARRAY_TASK_MIN=%d, SLURM_ARRAY_TASK_COUNT=%d", s, id, lo, n)
		s, err = checkShard(s, "the Slurm array")
		if err != nil {
			err = fmt.Errorf("%w (%s): submit a plain range, sbatch --array=0-%d", err, from, n-1)
		}
		return s, from, true, err
	}
	if getenv("JOB_COMPLETION_INDEX") != "" {
		k, err := atoi("JOB_COMPLETION_INDEX")
		if err != nil {
			return s, "", true, err
		}
		if shards < 1 {
			return s, "", true, fmt.Errorf("JOB_COMPLETION_INDEX=%d is set (a Kubernetes Indexed Job), but not the number of shards: pass --shards N, the Job's spec.completions", k)
		}
		s = Shard{k, shards}
		from := fmt.Sprintf("shard %s from Kubernetes: JOB_COMPLETION_INDEX=%d, --shards %d", s, k, shards)
		s, err = checkShard(s, "JOB_COMPLETION_INDEX")
		return s, from, true, err
	}
	return s, "", false, nil
}

// Version returns the version of this lldiff build: the module version and
// the VCS revision Go recorded, or "devel".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += "+dirty"
			}
		}
	}
	return v
}

// FileSHA256 returns the hex SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// DatasetSHA256 returns the hex SHA-256 of a dataset's content: whether it
// is paired and the text of every prompt of A and B, in order (after
// escapes are processed; not the file names, which may differ between
// machines).
func DatasetSHA256(ds *contrast.Dataset) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.Encode(ds.Paired)
	for _, set := range [][]contrast.Prompt{ds.A, ds.B} {
		enc.Encode(len(set))
		for _, p := range set {
			enc.Encode(p.Text)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// subset returns the prompts of shard s: the pairs [lo, hi) of a paired
// dataset, or the blocks of A and of B; offA and offB are the indices of
// its first prompts in A and B.
func (cd *ContrastData) subset(s Shard) (sub *ContrastData, offA, offB int) {
	ds := cd.Dataset
	loA, hiA := s.Range(len(ds.A))
	loB, hiB := s.Range(len(ds.B))
	sub = &ContrastData{
		Dataset: &contrast.Dataset{A: ds.A[loA:hiA], B: ds.B[loB:hiB], Paired: ds.Paired},
		IDsA:    cd.IDsA[loA:hiA], IDsB: cd.IDsB[loB:hiB],
		RowsA: cd.RowsA[loA:hiA], RowsB: cd.RowsB[loB:hiB],
		Warnings: cd.Warnings,
	}
	return sub, loA, loB
}

// StatsPart holds the mergeable statistics of a contrast over some shards
// of its dataset: per hook and set, every row taken (float32, with the
// index of its prompt in the whole set) and the Welford moments of the
// rows (float64).
type StatsPart struct {
	Manifest StatsManifest
	Hooks    []models.Hook
	A, B     map[models.Hook]*contrast.Samples
	MA, MB   map[models.Hook]*contrast.Moments
}

// ContrastShard runs shard s of a contrast: it tokenizes the whole dataset
// (so that errors and warnings are those of the unsharded run), decodes
// the prompts of the shard and keeps their rows and moments. The
// manifest's Options.KVType (an engine setting) is the caller's to fill.
func ContrastShard(e models.Engine, o ContrastOptions, s Shard) (*StatsPart, error) {
	cd, err := TokenizeContrast(e, o)
	if err != nil {
		return nil, err
	}
	// the model's hash, read while the shard decodes
	type sum struct {
		hex string
		err error
	}
	hashed := make(chan sum, 1)
	go func() {
		h, err := FileSHA256(e.Path())
		hashed <- sum{h, err}
	}()
	info := e.ModelInfo()
	hooks := contrastHooks(info.NLayer, o.Kinds)
	sub, offA, offB := cd.subset(s)
	seqs, _, _ := sub.Seqs()
	rows := 0
	for _, r := range append(append([][]int{}, sub.RowsA...), sub.RowsB...) {
		rows += len(r)
	}
	sa, sb := map[models.Hook]*contrast.Samples{}, map[models.Hook]*contrast.Samples{}
	speed := ContrastSpeed{Sequences: len(seqs), Parallel: o.Parallel}
	for _, q := range seqs {
		speed.Tokens += len(q)
	}
	if rows > 0 {
		run, err := e.NewRunner(seqs, o.Parallel)
		if err != nil {
			return nil, err
		}
		sa, sb, speed, err = CollectRows(run, sub, hooks, o.Parallel, o.Progress)
		run.Close()
		if err != nil {
			return nil, err
		}
		if err := checkSamplesFinite(e, hooks, sub, sa, sb); err != nil {
			return nil, err
		}
	}
	p := &StatsPart{Hooks: hooks, A: sa, B: sb, MA: map[models.Hook]*contrast.Moments{}, MB: map[models.Hook]*contrast.Moments{}}
	ds := cd.Dataset
	p.Manifest = StatsManifest{
		Format: statsFormat, FormatVersion: statsFormatVersion, LLDiff: Version(),
		Model:   StatsModel{Arch: info.Arch, NLayer: info.NLayer, DModel: info.DModel},
		Dataset: StatsDataset{SHA256: DatasetSHA256(ds), Paired: ds.Paired, A: StatsSet{Source: o.Sources[0], Prompts: len(ds.A)}, B: StatsSet{Source: o.Sources[1], Prompts: len(ds.B)}},
		Shards:  []int{s.K}, N: s.N, Warnings: append([]string{}, cd.Warnings...), Throughput: speed,
		Options: StatsOptions{Positions: o.Spec, BOS: []string{"auto", "yes", "no"}[o.Tokenize.BOS], Special: o.Tokenize.ParseSpecial},
	}
	for _, k := range o.Kinds {
		p.Manifest.Options.Kinds = append(p.Manifest.Options.Kinds, string(k))
	}
	if st, err := os.Stat(e.Path()); err == nil {
		p.Manifest.Model.Bytes = st.Size()
	}
	for _, h := range hooks {
		for _, side := range []struct {
			set map[models.Hook]*contrast.Samples
			mom map[models.Hook]*contrast.Moments
			off int
		}{{sa, p.MA, offA}, {sb, p.MB, offB}} {
			x := side.set[h]
			if x == nil {
				x = &contrast.Samples{Groups: []int{}}
				side.set[h] = x
			}
			for i := range x.Groups {
				x.Groups[i] += side.off
			}
			m := contrast.NewMoments(x.D)
			m.AddSamples(x)
			side.mom[h] = m
		}
	}
	p.Manifest.RowsA, p.Manifest.RowsB = sa[hooks[0]].N, sb[hooks[0]].N
	got := <-hashed
	if got.err != nil {
		return nil, got.err
	}
	p.Manifest.Model.SHA256, p.Manifest.Model.Path = got.hex, o.Model
	return p, nil
}
