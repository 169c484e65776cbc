package analysis

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/safetensors"
	"github.com/lldiff/lldiff/models"
)

// A stats part is a directory (docs/cluster.md, "The part format"):
//
//	manifest.json                     StatsManifest, written last
//	blocks.0.hook_resid_post.safetensors
//	...                               one file per hook
//
// Each hook file holds, for set s in {a, b}: s.rows (F32 [n, d]), s.groups
// (I64 [n]: the index of each row's prompt in the whole set), s.count
// (I64 [1]), s.mean and s.m2 (F64 [d]: Welford moments of the rows).
const (
	statsFormat        = "lldiff-contrast-stats"
	statsFormatVersion = 1
	// StatsManifestName is the file that marks a part complete.
	StatsManifestName = "manifest.json"
)

// StatsManifest describes a part: what was run on which shards.
type StatsManifest struct {
	Format        string        `json:"format"`
	FormatVersion int           `json:"format_version"`
	LLDiff        string        `json:"lldiff_version"`
	Model         StatsModel    `json:"model"`
	Dataset       StatsDataset  `json:"dataset"`
	Options       StatsOptions  `json:"options"`
	N             int           `json:"n"`
	Shards        []int         `json:"shards"`
	RowsA         int           `json:"rows_a"`
	RowsB         int           `json:"rows_b"`
	Warnings      []string      `json:"warnings"`
	Throughput    ContrastSpeed `json:"throughput"`
	Hooks         []StatsHook   `json:"hooks"`
}

// StatsModel identifies the model of a part.
type StatsModel struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	Arch   string `json:"arch"`
	NLayer int    `json:"n_layer"`
	DModel int    `json:"d_model"`
}

// StatsDataset identifies the dataset of a part.
type StatsDataset struct {
	SHA256 string   `json:"sha256"`
	Paired bool     `json:"paired"`
	A      StatsSet `json:"a"`
	B      StatsSet `json:"b"`
}

// StatsSet is one set of the dataset: where it was read, how many prompts.
type StatsSet struct {
	Source  string `json:"source"`
	Prompts int    `json:"prompts"`
}

// StatsOptions are the options that change the statistics; parts merge
// only when theirs are equal.
type StatsOptions struct {
	Positions string   `json:"positions"`
	Kinds     []string `json:"kinds"`
	BOS       string   `json:"bos"`
	Special   bool     `json:"special"`
	KVType    string   `json:"kv_type"`
}

// StatsHook is one hook's file.
type StatsHook struct {
	Hook  string `json:"hook"`
	File  string `json:"file"`
	Width int    `json:"width"`
	Bytes int64  `json:"bytes"`
}

func hookFile(h string) string { return h + ".safetensors" }

// hookData is one hook's rows and moments of both sets.
type hookData struct {
	set [2]*contrast.Samples
	mom [2]*contrast.Moments
}

func (d *hookData) width() int {
	return max(d.set[0].D, d.set[1].D, len(d.mom[0].Mean), len(d.mom[1].Mean))
}

// Write writes the part's hook files and then its manifest, each to
// path(name) (a staging directory: see internal/outfile).
func (p *StatsPart) Write(path func(name string) string) error {
	p.Manifest.Hooks = nil
	for _, h := range p.Hooks {
		d := &hookData{set: [2]*contrast.Samples{p.A[h], p.B[h]}, mom: [2]*contrast.Moments{p.MA[h], p.MB[h]}}
		name := hookFile(h.Name())
		size, err := writeHookFile(path(name), h.Name(), d)
		if err != nil {
			return err
		}
		p.Manifest.Hooks = append(p.Manifest.Hooks, StatsHook{Hook: h.Name(), File: name, Width: d.width(), Bytes: size})
	}
	return writeManifest(path(StatsManifestName), &p.Manifest)
}

func writeManifest(path string, m *StatsManifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeHookFile writes one hook's file, streaming the rows, and returns
// its size.
func writeHookFile(path, hook string, d *hookData) (int64, error) {
	w := d.width()
	var specs []safetensors.Spec
	for s, name := range []string{"a", "b"} {
		n := int64(d.set[s].N)
		specs = append(specs,
			safetensors.Spec{Name: name + ".rows", DType: safetensors.F32, Shape: []int64{n, int64(w)}},
			safetensors.Spec{Name: name + ".groups", DType: safetensors.I64, Shape: []int64{n}},
			safetensors.Spec{Name: name + ".count", DType: safetensors.I64, Shape: []int64{1}},
			safetensors.Spec{Name: name + ".mean", DType: safetensors.F64, Shape: []int64{int64(w)}},
			safetensors.Spec{Name: name + ".m2", DType: safetensors.F64, Shape: []int64{int64(w)}},
		)
	}
	h, hdr, err := safetensors.Plan(specs, map[string]string{"format": statsFormat, "hook": hook})
	if err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sw, err := safetensors.NewWriter(f, h, hdr)
	if err != nil {
		return 0, err
	}
	put := func(name string, b []byte) {
		if err == nil {
			err = sw.WriteAt(name, 0, b)
		}
	}
	for s, name := range []string{"a", "b"} {
		x, m := d.set[s], d.mom[s]
		// rows in chunks of about 1 MiB, not one copy of the whole matrix
		step := max(1, (1<<20)/max(4*w, 1))
		var buf []byte
		for i := 0; i < x.N && err == nil; i += step {
			hi := min(x.N, i+step)
			buf = safetensors.Float32Bytes(buf[:0], x.Data[i*w:hi*w])
			if err == nil {
				err = sw.WriteAt(name+".rows", int64(i)*int64(4*w), buf)
			}
		}
		g := make([]int64, len(x.Groups))
		for i, v := range x.Groups {
			g[i] = int64(v)
		}
		put(name+".groups", safetensors.Int64Bytes(nil, g))
		put(name+".count", safetensors.Int64Bytes(nil, []int64{m.N}))
		mean, m2 := m.Mean, m.M2
		if len(mean) != w { // no rows: zeros of the hook's width
			mean, m2 = make([]float64, w), make([]float64, w)
		}
		put(name+".mean", safetensors.Float64Bytes(nil, mean))
		put(name+".m2", safetensors.Float64Bytes(nil, m2))
	}
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	return h.Size(), nil
}

// readHookFile reads one hook's file.
func readHookFile(path string) (*hookData, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &hookData{}
	for s, name := range []string{"a", "b"} {
		rows, shape, err := f.Float32(name + ".rows")
		if err != nil {
			return nil, err
		}
		groups, _, err := f.Int64(name + ".groups")
		if err != nil {
			return nil, err
		}
		count, _, err := f.Int64(name + ".count")
		if err != nil {
			return nil, err
		}
		mean, _, err := f.Float64(name + ".mean")
		if err != nil {
			return nil, err
		}
		m2, _, err := f.Float64(name + ".m2")
		if err != nil {
			return nil, err
		}
		if len(shape) != 2 || int64(len(groups)) != shape[0] || len(count) != 1 || count[0] != shape[0] || int64(len(mean)) != shape[1] || len(m2) != len(mean) {
			return nil, fmt.Errorf("%s: the tensors of set %s do not agree (rows %v, %d groups, count %v, %d means): the file is damaged; run its shard again", path, name, shape, len(groups), count, len(mean))
		}
		x := &contrast.Samples{N: int(shape[0]), D: int(shape[1]), Data: rows, Groups: make([]int, len(groups))}
		for i, g := range groups {
			x.Groups[i] = int(g)
		}
		d.set[s] = x
		d.mom[s] = &contrast.Moments{N: count[0], Mean: mean, M2: m2}
	}
	return d, nil
}

// ReadStatsManifest reads the manifest of the part in dir and checks that
// the part is complete: a manifest of this format, and every hook file of
// the size it records.
func ReadStatsManifest(dir string) (*StatsManifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, StatsManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s: no such part (a directory written by contrast --shard-out or lldiff merge)", dir)
		}
		return nil, fmt.Errorf("%s has no %s: not a part, or one whose run did not finish; run its shard again", dir, StatsManifestName)
	}
	if err != nil {
		return nil, err
	}
	var m StatsManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v: the manifest is damaged", filepath.Join(dir, StatsManifestName), err)
	}
	if m.Format != statsFormat {
		return nil, fmt.Errorf("%s: format %q, not %q: not a part written by contrast --shard-out", dir, m.Format, statsFormat)
	}
	if m.FormatVersion != statsFormatVersion {
		return nil, fmt.Errorf("%s: format version %d; this lldiff (%s) reads version %d: merge with the lldiff that wrote it", dir, m.FormatVersion, Version(), statsFormatVersion)
	}
	if m.N < 1 || len(m.Shards) == 0 || len(m.Hooks) == 0 {
		return nil, fmt.Errorf("%s: the manifest names no shards or no hooks: the part is damaged; run its shard again", dir)
	}
	for _, h := range m.Hooks {
		if h.File != filepath.Base(h.File) || strings.HasPrefix(h.File, ".") {
			return nil, fmt.Errorf("%s: hook file %q is not a plain file name: the manifest is damaged", dir, h.File)
		}
		st, err := os.Stat(filepath.Join(dir, h.File))
		if err != nil {
			return nil, fmt.Errorf("%s: %v: the part is incomplete; run its shard again", dir, err)
		}
		if st.Size() != h.Bytes {
			return nil, fmt.Errorf("%s: %s has %d bytes, the manifest says %d: the part is damaged or was replaced; run its shard again", dir, h.File, st.Size(), h.Bytes)
		}
	}
	return &m, nil
}

// Complete reports whether the manifest of a part covers every shard.
func (m *StatsManifest) Complete() bool {
	if len(m.Shards) != m.N {
		return false
	}
	for i, k := range m.Shards {
		if k != i {
			return false
		}
	}
	return true
}

// Matches returns an error saying how the part o was made differently from
// m (model, dataset, options, shard count, hooks), naming both; nil when
// they belong together.
func (m *StatsManifest) Matches(o *StatsManifest, mName, oName string) error {
	differ := func(what, a, b, hint string) error {
		return fmt.Errorf("%s and %s do not belong together: %s %s vs %s (%s)", oName, mName, what, b, a, hint)
	}
	switch {
	case m.Model.SHA256 != o.Model.SHA256:
		return differ("model sha256", short(m.Model.SHA256), short(o.Model.SHA256), fmt.Sprintf("another model file: %s vs %s", o.Model.Path, m.Model.Path))
	case m.Dataset.SHA256 != o.Dataset.SHA256 || m.Dataset.Paired != o.Dataset.Paired:
		return differ("dataset sha256", short(m.Dataset.SHA256), short(o.Dataset.SHA256), "other prompts, the same file edited, or other --paired/--escapes")
	case m.N != o.N:
		return differ("shard count N", fmt.Sprint(m.N), fmt.Sprint(o.N), "parts of runs split differently")
	}
	ma, _ := json.Marshal(m.Options)
	oa, _ := json.Marshal(o.Options)
	if string(ma) != string(oa) {
		return differ("options", string(ma), string(oa), "run every shard with the same --pos, --kinds, --bos, --special and --kv-type")
	}
	if !slices.EqualFunc(m.Hooks, o.Hooks, func(a, b StatsHook) bool { return a.Hook == b.Hook }) {
		return differ("hook list", fmt.Sprint(len(m.Hooks)), fmt.Sprint(len(o.Hooks)), "a damaged manifest")
	}
	return nil
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// MergeStats merges the parts in dirs into one part written to path(name):
// it checks that they belong together and that every shard of 0..N−1 is
// in exactly one of them, then, hook by hook (memory holds one hook of
// all parts), puts the rows back in shard order and merges the moments
// (Chan). The result does not depend on the order of dirs. Notes are
// things worth saying that do not stop the merge.
func MergeStats(dirs []string, path func(name string) string) (m *StatsManifest, notes []string, err error) {
	if len(dirs) == 0 {
		return nil, nil, errors.New("no parts to merge")
	}
	type part struct {
		dir string
		m   *StatsManifest
	}
	var parts []part
	for _, d := range dirs {
		pm, err := ReadStatsManifest(d)
		if err != nil {
			return nil, nil, err
		}
		parts = append(parts, part{d, pm})
	}
	sort.SliceStable(parts, func(i, j int) bool { return slices.Min(parts[i].m.Shards) < slices.Min(parts[j].m.Shards) })
	first := parts[0]
	owner := map[int]string{}
	for _, p := range parts {
		if err := first.m.Matches(p.m, first.dir, p.dir); err != nil {
			return nil, nil, err
		}
		if p.m.LLDiff != first.m.LLDiff {
			notes = append(notes, fmt.Sprintf("%s was written by lldiff %s, %s by %s", p.dir, p.m.LLDiff, first.dir, first.m.LLDiff))
		}
		for _, k := range p.m.Shards {
			if k < 0 || k >= first.m.N {
				return nil, nil, fmt.Errorf("%s: shard %d of %d does not exist: the manifest is damaged", p.dir, k, first.m.N)
			}
			if o, dup := owner[k]; dup {
				return nil, nil, fmt.Errorf("shard %d/%d is in both %s and %s: give each part once", k, first.m.N, o, p.dir)
			}
			owner[k] = p.dir
		}
	}
	var missing []string
	for k := range first.m.N {
		if _, ok := owner[k]; !ok {
			missing = append(missing, fmt.Sprint(k))
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("shard(s) %s of %d are missing: merge needs the part of every shard 0..%d (a failed or unfinished job? run it again, then merge)", strings.Join(missing, ", "), first.m.N, first.m.N-1)
	}
	out := *first.m
	out.Shards, out.Hooks = nil, nil
	out.RowsA, out.RowsB = 0, 0
	out.Throughput = ContrastSpeed{Parallel: first.m.Throughput.Parallel}
	for _, p := range parts {
		out.Shards = append(out.Shards, p.m.Shards...)
		out.RowsA += p.m.RowsA
		out.RowsB += p.m.RowsB
		t := p.m.Throughput
		out.Throughput.Sequences += t.Sequences
		out.Throughput.Tokens += t.Tokens
		out.Throughput.Seconds += t.Seconds
	}
	slices.Sort(out.Shards)
	if s := out.Throughput.Seconds; s > 0 {
		out.Throughput.PromptsPerSec = float64(out.Throughput.Sequences) / s
		out.Throughput.TokensPerSecon = float64(out.Throughput.Tokens) / s
	}
	for _, hk := range first.m.Hooks {
		merged := &hookData{}
		for s := range 2 {
			merged.set[s] = &contrast.Samples{Groups: []int{}}
			merged.mom[s] = contrast.NewMoments(0)
		}
		for _, p := range parts {
			d, err := readHookFile(filepath.Join(p.dir, hookFile(hk.Hook)))
			if err != nil {
				return nil, nil, err
			}
			for s := range 2 {
				x, dst := d.set[s], merged.set[s]
				if x.N > 0 {
					if dst.N > 0 && dst.D != x.D {
						return nil, nil, fmt.Errorf("%s: %s rows are %d wide, other parts' %d: the parts do not belong together", p.dir, hk.Hook, x.D, dst.D)
					}
					dst.D = x.D
					dst.Data = append(dst.Data, x.Data...)
					dst.Groups = append(dst.Groups, x.Groups...)
					dst.N += x.N
				}
				merged.mom[s].Merge(d.mom[s])
			}
		}
		size, err := writeHookFile(path(hookFile(hk.Hook)), hk.Hook, merged)
		if err != nil {
			return nil, nil, err
		}
		out.Hooks = append(out.Hooks, StatsHook{Hook: hk.Hook, File: hookFile(hk.Hook), Width: merged.width(), Bytes: size})
	}
	if err := writeManifest(path(StatsManifestName), &out); err != nil {
		return nil, nil, err
	}
	return &out, notes, nil
}

// ContrastFromStats makes the contrast result of a merged part (or of a
// single part of a run with one shard) without running a model: the
// statistics of each hook from its rows, computed as Contrast computes
// them. e, when not nil, is the part's model, for the logit lens (o.LensK,
// o.Lens); o's dataset, model and positions come from the manifest.
func ContrastFromStats(dir string, e models.Engine, o ContrastOptions) (*ContrastResult, *StatsManifest, error) {
	m, err := ReadStatsManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	if !m.Complete() {
		return nil, nil, fmt.Errorf("%s holds shard(s) %v of %d: merge the parts of every shard first (lldiff merge -o MERGED PART...)", dir, m.Shards, m.N)
	}
	if e == nil && o.LensK > 0 {
		return nil, nil, errors.New("the logit lens needs the model: pass -m MODEL, or --lens-k 0")
	}
	if e != nil {
		sum, err := FileSHA256(e.Path())
		if err != nil {
			return nil, nil, err
		}
		if sum != m.Model.SHA256 {
			return nil, nil, inputErr("%s is not the model of %s (sha256 %s, the statistics were made with %s, sha256 %s): pass that model to -m", e.Path(), dir, short(sum), m.Model.Path, short(m.Model.SHA256))
		}
	}
	var hooks []models.Hook
	for _, h := range m.Hooks {
		hs, err := models.ParseHook(h.Hook, m.Model.NLayer)
		if err != nil || len(hs) != 1 {
			return nil, nil, fmt.Errorf("%s: hook %q: the manifest is damaged", dir, h.Hook)
		}
		hooks = append(hooks, hs[0])
	}
	o.Model, o.Spec = m.Model.Path, m.Options.Positions
	o.Sources = [2]string{m.Dataset.A.Source, m.Dataset.B.Source}
	facts := contrastFacts{
		Arch: m.Model.Arch, Paired: m.Dataset.Paired, PromptsA: m.Dataset.A.Prompts, PromptsB: m.Dataset.B.Prompts,
		RowsA: m.RowsA, RowsB: m.RowsB, Warnings: m.Warnings, Speed: m.Throughput, Hooks: hooks,
	}
	if facts.RowsA == 0 || facts.RowsB == 0 {
		return nil, nil, fmt.Errorf("%s: set A has %d rows and set B %d: both need at least one", dir, facts.RowsA, facts.RowsB)
	}
	res, err := finishContrast(e, o, facts, func(h models.Hook) (*contrast.Stats, error) {
		d, err := readHookFile(filepath.Join(dir, hookFile(h.Name())))
		if err != nil {
			return nil, err
		}
		return contrast.Compute(d.set[0], d.set[1], m.Dataset.Paired)
	})
	return res, m, err
}
