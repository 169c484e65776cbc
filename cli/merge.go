package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/models"
)

// shardFlags are contrast's flags for sharded runs (docs/cluster.md).
type shardFlags struct {
	// Spec is --shard K/N; Shards is --shards N (with Kubernetes'
	// JOB_COMPLETION_INDEX); Out is --shard-out PART.
	Spec   string
	Shards int
	Out    string
	// FromStats is --from-stats MERGED.
	FromStats string
}

func registerShardFlags(cmd *cobra.Command, s *shardFlags) {
	f := cmd.Flags()
	f.StringVar(&s.Spec, "shard", "", "run only shard K/N of the prompts (K from 0) and write its statistics to --shard-out (default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)")
	f.IntVar(&s.Shards, "shards", 0, "the number of shards N, with Kubernetes' JOB_COMPLETION_INDEX as K")
	f.StringVar(&s.Out, "shard-out", "", "write the shard's mergeable statistics to the directory PART instead of a report")
	f.StringVar(&s.FromStats, "from-stats", "", "report from merged statistics (lldiff merge) instead of running the model")
}

// check validates the shard flags against the rest of contrast's.
func (s *shardFlags) check(opts *ContrastOptions) error {
	switch {
	case s.FromStats != "" && (s.Spec != "" || s.Shards != 0 || s.Out != ""):
		return usageErr("--from-stats reports on finished statistics: drop --shard, --shards and --shard-out")
	case s.FromStats != "" && (opts.AFile != "" || opts.BFile != "" || opts.Pairs != ""):
		return usageErr("--from-stats reads the prompts' statistics from %s: drop --a, --b and --pairs", s.FromStats)
	case s.Spec != "" && s.Shards != 0:
		return usageErr("give --shard K/N, or --shards N with JOB_COMPLETION_INDEX set, not both")
	case (s.Spec != "" || s.Shards != 0) && s.Out == "":
		return usageErr("a shard writes statistics, not a report: pass --shard-out PART, then lldiff merge the parts")
	case s.Shards < 0:
		return usageErr("--shards %d: give the number of shards, at least 1", s.Shards)
	case s.Out != "" && (opts.SaveVectors != "" || opts.ExportCvec != ""):
		return usageErr("a shard has no vectors of its own: pass --save-vectors and --export-cvec to contrast --from-stats MERGED")
	}
	if s.Spec != "" {
		if _, err := analysis.ParseShard(s.Spec); err != nil {
			return &UsageError{Err: err}
		}
	}
	return nil
}

// resolve returns the shard to run: --shard, or what the scheduler set,
// with a sentence saying where it came from.
func (s *shardFlags) resolve(getenv func(string) string) (analysis.Shard, string, error) {
	if s.Spec != "" {
		sh, err := analysis.ParseShard(s.Spec)
		return sh, fmt.Sprintf("shard %s (--shard)", sh), err
	}
	sh, from, ok, err := analysis.ShardFromEnv(getenv, s.Shards)
	if err != nil {
		return sh, "", &UsageError{Err: err}
	}
	if !ok {
		return sh, "", usageErr("--shard-out without --shard, and no scheduler set a shard: pass --shard K/N, or run in a Slurm job array (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with --shards N)")
	}
	return sh, from, nil
}

// kvType is the KV cache type a manifest records.
func kvType(s string) string {
	if s = strings.ToLower(s); s == "" {
		return "f32"
	}
	return s
}

// contrastShardRun runs one shard of a contrast and writes its part.
func contrastShardRun(opts *ContrastOptions) error {
	sh, from, err := opts.Shard.resolve(os.Getenv)
	if err != nil {
		return err
	}
	fmt.Fprintln(opts.IO.ErrOut, from)
	out := opts.Shard.Out
	ds, source, err := readContrastDataset(opts)
	if err != nil {
		return err
	}
	if !opts.Force {
		if done, err := finishedShard(opts, out, sh, analysis.DatasetSHA256(ds)); err != nil || done {
			return err
		}
	}
	if err := checkOutDir(out, "--shard-out", opts.Force); err != nil {
		return err
	}
	d, err := outfile.CreateDir(out, analysis.StatsManifestName)
	if err != nil {
		return fmt.Errorf("--shard-out: %w", err)
	}
	defer d.Abort()
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	kinds, err := parseKinds(opts.Kinds, m)
	if err != nil {
		return err
	}
	part, err := analysis.ContrastShard(opts.Model.engine(m), analysis.ContrastOptions{
		Model: opts.Model.Model, Dataset: ds, Sources: source, Positions: opts.Positions, Spec: opts.Pos,
		Tokenize: opts.Model.tokenizeOptions(), Kinds: kinds, Parallel: opts.Parallel, NCtx: opts.Model.NCtx,
		Progress: newProgress(opts.IO, "decoding %d/%d prompts", false),
	}, sh)
	if err != nil {
		return flagAdvice(err)
	}
	part.Manifest.Options.KVType = kvType(opts.Model.KVType)
	if err := part.Write(d.Path); err != nil {
		return fmt.Errorf("--shard-out %s: %w (nothing was changed there)", out, err)
	}
	if err := d.Commit(); err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, part.Manifest)
	}
	mf := part.Manifest
	var size int64
	for _, h := range mf.Hooks {
		size += h.Bytes
	}
	loA, hiA := sh.Range(mf.Dataset.A.Prompts)
	loB, hiB := sh.Range(mf.Dataset.B.Prompts)
	fmt.Fprintf(opts.IO.Out, "shard %s: prompts %d..%d of A and %d..%d of B, %d+%d rows, %d hooks: wrote %s (%s)\n",
		sh, loA, hiA, loB, hiB, mf.RowsA, mf.RowsB, len(mf.Hooks), out, human(uint64(size)))
	fmt.Fprintf(opts.IO.Out, "when every shard is done: lldiff merge -o MERGED PART... && lldiff contrast --from-stats MERGED\n")
	return nil
}

// finishedShard reports whether out already holds this shard of this run
// (then a rerun is skipped, and says so), and refuses to replace a part of
// another run or a directory that is not a finished part.
func finishedShard(opts *ContrastOptions, out string, sh analysis.Shard, dsHash string) (bool, error) {
	mf, err := analysis.ReadStatsManifest(out)
	if err != nil {
		if _, serr := os.Stat(out); errors.Is(serr, fs.ErrNotExist) {
			return false, nil
		}
		if ents, _ := os.ReadDir(out); len(ents) == 0 {
			return false, nil
		}
		return false, fmt.Errorf("--shard-out %s exists and is not a finished part (%v): pass --force to run the shard again into it, or choose another directory", out, err)
	}
	var why []string
	if len(mf.Shards) != 1 || mf.Shards[0] != sh.K || mf.N != sh.N {
		why = append(why, fmt.Sprintf("it holds shard(s) %v of %d, this is shard %s", mf.Shards, mf.N, sh))
	}
	if mf.Dataset.SHA256 != dsHash {
		why = append(why, "its prompts differ from these")
	}
	if mf.Options.Positions != opts.Pos {
		why = append(why, fmt.Sprintf("its --pos is %q", mf.Options.Positions))
	}
	var kinds []string
	for _, s := range strings.Split(opts.Kinds, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if hs, err := models.ParseHook(s, mf.Model.NLayer); err == nil && len(hs) > 0 {
			s = string(hs[0].Kind)
		}
		kinds = append(kinds, s)
	}
	if strings.Join(kinds, ",") != strings.Join(mf.Options.Kinds, ",") {
		why = append(why, fmt.Sprintf("its --kinds are %s", strings.Join(mf.Options.Kinds, ",")))
	}
	if st, err := os.Stat(opts.Model.Model); err != nil || st.Size() != mf.Model.Bytes {
		why = append(why, fmt.Sprintf("its model is %s", mf.Model.Path))
	}
	if len(why) > 0 {
		return false, fmt.Errorf("--shard-out %s holds a finished part of another run (%s): choose another directory, or pass --force to replace it", out, strings.Join(why, "; "))
	}
	fmt.Fprintf(opts.IO.ErrOut, "%s already holds shard %s of this run: skipped (--force runs it again)\n", out, sh)
	if opts.JSON {
		return true, writeJSON(opts.IO.Out, mf)
	}
	return true, nil
}

// contrastFromStats makes the result of merged statistics: without -m no
// model is loaded and the logit lens is left out; with -m the model must
// be the one the statistics were made with (sha256), and only its
// unembedding is used. It returns the result, the model's layer count, and
// a function that releases the model.
func contrastFromStats(opts *ContrastOptions) (_ *ContrastJSON, _ int, _ func(), err error) {
	o := analysis.ContrastOptions{LensK: opts.LensK, Lens: opts.Lens}
	var e models.Engine
	release := func() {}
	switch {
	case opts.LensK > 0 && opts.Model.Model != "":
		m, err := opts.Model.load(false)
		if err != nil {
			return nil, 0, nil, err
		}
		e, release = opts.Model.engine(m), func() { m.Close() }
	case opts.LensK > 0:
		o.LensK, opts.LensK = 0, 0
		defer func() {
			if err == nil {
				fmt.Fprintln(opts.IO.ErrOut, "note: no logit lens without the model: pass -m MODEL (only its unembedding is read), or --lens-k 0")
			}
		}()
	}
	res, mf, err := analysis.ContrastFromStats(opts.Shard.FromStats, e, o)
	if err != nil {
		release()
		return nil, 0, nil, flagAdvice(err)
	}
	return res, mf.Model.NLayer, release, nil
}

// newCmdMerge declares `lldiff merge`.
func newCmdMerge(io *IOStreams, runF func(*MergeOptions) error) *cobra.Command {
	opts := &MergeOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "merge -o MERGED PART...",
		Short: "Merge the statistics of sharded contrast runs (contrast --shard-out) into one",
		Long: `Merge the parts written by contrast --shard K/N --shard-out PART into one
directory that contrast --from-stats MERGED reports on, as if the whole
dataset had run in one process.

The parts must belong together: the same model file (sha256), the same
prompts (dataset sha256), the same --pos, --kinds, --bos, --special and
--kv-type, and the same shard count N; every shard 0..N-1 must be in exactly
one part. The order of the parts on the command line does not matter.
docs/cluster.md describes the part format and the merge, with Slurm and
Kubernetes examples.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Parts = args
			if opts.Out == "" {
				return usageErr("no output directory: pass -o MERGED")
			}
			if len(args) == 0 {
				return usageErr("no parts to merge: give the directories written by contrast --shard-out")
			}
			if runF != nil {
				return runF(opts)
			}
			return mergeRun(opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Out, "output", "o", "", "the merged directory (created; must be new or empty unless --force)")
	f.BoolVar(&opts.Force, "force", false, "write into a non-empty output directory")
	f.BoolVar(&opts.JSON, "json", false, "print the merged manifest as JSON")
	return cmd
}

// MergeOptions are the options of `lldiff merge`.
type MergeOptions struct {
	IO    *IOStreams
	Parts []string
	Out   string
	Force bool
	JSON  bool
}

func mergeRun(opts *MergeOptions) error {
	if err := checkOutDir(opts.Out, "-o", opts.Force); err != nil {
		return err
	}
	d, err := outfile.CreateDir(opts.Out, analysis.StatsManifestName)
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	defer d.Abort()
	mf, notes, err := analysis.MergeStats(opts.Parts, d.Path)
	if err != nil {
		return err
	}
	if err := d.Commit(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(opts.IO.ErrOut, "note:", n)
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, mf)
	}
	fmt.Fprintf(opts.IO.Out, "merged %d part(s), shards 0..%d of %d: A %d rows, B %d rows, %d hooks → %s\n",
		len(opts.Parts), mf.N-1, mf.N, mf.RowsA, mf.RowsB, len(mf.Hooks), opts.Out)
	fmt.Fprintf(opts.IO.Out, "report: lldiff contrast --from-stats %s  (-m %s adds the logit lens)\n", opts.Out, mf.Model.Path)
	return nil
}
