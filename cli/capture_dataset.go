package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/models"
)

// captureDatasetFlags are capture's flags for activation datasets
// (capture --prompts FILE).
type captureDatasetFlags struct {
	Prompts   string
	Escapes   bool
	Pos       string
	Parallel  int
	MaxFileMB int
	Shard     string
	Shards    int
}

func registerDatasetFlags(cmd *cobra.Command, d *captureDatasetFlags) {
	f := cmd.Flags()
	f.StringVar(&d.Prompts, "prompts", "", "capture a dataset: every prompt of FILE (one per line, or .jsonl) to safetensors shards in -o DIR")
	f.BoolVar(&d.Escapes, "escapes", false, `with --prompts: process \n, \t, \\ and \xNN in a text prompt file`)
	f.StringVar(&d.Pos, "pos", "all", "with --prompts: positions kept of each prompt: all, last, or indices such as -1 or 0,3")
	f.IntVarP(&d.Parallel, "parallel", "P", 8, "with --prompts: prompts decoded together in one batch")
	f.IntVar(&d.MaxFileMB, "max-file-mb", 1024, "with --prompts: the size cap of one shard file in MiB (a file holds at least one prompt)")
	f.StringVar(&d.Shard, "shard", "", "with --prompts: capture only shard K/N of the prompts (default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)")
	f.IntVar(&d.Shards, "shards", 0, "with --prompts: the number of shards N, with Kubernetes' JOB_COMPLETION_INDEX as K")
}

// check validates the dataset flags; args are capture's arguments.
func (d *captureDatasetFlags) check(args []string, opts *CaptureOptions) error {
	switch {
	case len(args) > 0 || opts.PromptFile != "":
		return usageErr("--prompts captures a file of prompts: drop the prompt argument and --prompt-file")
	case d.Parallel < 1 || d.MaxFileMB < 1:
		return usageErr("--parallel and --max-file-mb take numbers >= 1")
	case d.Shard != "" && d.Shards != 0:
		return usageErr("give --shard K/N, or --shards N with JOB_COMPLETION_INDEX set, not both")
	}
	if _, err := analysis.ParseRowSpec(d.Pos); err != nil {
		return &UsageError{Err: err}
	}
	if d.Shard != "" {
		if _, err := analysis.ParseShard(d.Shard); err != nil {
			return &UsageError{Err: err}
		}
	}
	return nil
}

// shard returns the shard to capture: --shard, a scheduler's, or none.
func (d *captureDatasetFlags) shard(io *IOStreams) (analysis.Shard, error) {
	if d.Shard != "" {
		return analysis.ParseShard(d.Shard)
	}
	sh, from, ok, err := analysis.ShardFromEnv(os.Getenv, d.Shards)
	if err != nil {
		return sh, &UsageError{Err: err}
	}
	if !ok {
		if d.Shards > 0 {
			return sh, usageErr("--shards %d without JOB_COMPLETION_INDEX: pass --shard K/N", d.Shards)
		}
		return analysis.Shard{}, nil
	}
	fmt.Fprintln(io.ErrOut, from)
	return sh, nil
}

func captureDatasetRun(opts *CaptureOptions) error {
	d := &opts.Dataset
	sh, err := d.shard(opts.IO)
	if err != nil {
		return err
	}
	if !opts.Force {
		if idx, err := analysis.ReadDatasetIndex(opts.OutDir); err == nil {
			same := idx.Source == d.Prompts && (idx.Shard == nil) == (sh.N == 0) && (idx.Shard == nil || idx.Shard.K == sh.K && idx.Shard.N == sh.N)
			if !same {
				return fmt.Errorf("-o %s holds another dataset (of %s): choose another directory, or pass --force to replace it", opts.OutDir, idx.Source)
			}
			fmt.Fprintf(opts.IO.ErrOut, "%s already holds this dataset (%d files, %d rows): skipped (--force captures it again)\n", opts.OutDir, len(idx.Files), idx.Rows)
			return nil
		}
	}
	if err := checkOutDir(opts.OutDir, "-o", opts.Force); err != nil {
		return err
	}
	out, err := outfile.CreateDir(opts.OutDir, analysis.DatasetIndexName)
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	defer out.Abort()
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	hooks, err := models.ParseHooks(opts.Hooks, m.NLayer())
	if err != nil {
		return &UsageError{Err: err}
	}
	for _, h := range hooks {
		if err := m.Hooks.Check(h.Kind); err != nil {
			return &UsageError{Err: err}
		}
	}
	pos, _ := analysis.ParseRowSpec(d.Pos)
	idx, err := analysis.CaptureDataset(opts.Model.engine(m), analysis.DatasetOptions{
		Model: opts.Model.Model, Prompts: d.Prompts, Escapes: d.Escapes, Hooks: hooks,
		Positions: pos, Spec: d.Pos, Tokenize: opts.Model.tokenizeOptions(), Parallel: d.Parallel,
		MaxFileBytes: int64(d.MaxFileMB) << 20, Shard: sh,
		Progress: &etaProgress{io: opts.IO, what: "prompts"},
	}, out.Path)
	if err != nil {
		return flagAdvice(err)
	}
	if err := out.Commit(); err != nil {
		return err
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, idx)
	}
	var size int64
	for _, f := range idx.Files {
		size += f.Bytes
	}
	fmt.Fprintf(opts.IO.Out, "wrote %d rows of %d hooks in %d file(s) (%s, float32) and index.json to %s\n", idx.Rows, len(idx.Hooks), len(idx.Files), human(uint64(size)), opts.OutDir)
	fmt.Fprintf(opts.IO.Out, "load: from safetensors.numpy import load_file; x = load_file(\"%s/%s\")[\"%s\"]\n", opts.OutDir, idx.Files[0].File, idx.Hooks[0].Hook)
	return nil
}

// etaProgress shows done/total with the rate and the time left, on a
// terminal only.
type etaProgress struct {
	io    *IOStreams
	what  string
	n     int
	t0    time.Time
	last  time.Time
	shown bool
}

func (p *etaProgress) Start(total int) { p.n, p.t0 = total, time.Now() }

func (p *etaProgress) Update(done int) {
	if !p.io.IsTerminal || (time.Since(p.last) < 200*time.Millisecond && done < p.n) {
		return
	}
	p.last = time.Now()
	sec := time.Since(p.t0).Seconds()
	line := fmt.Sprintf("\r\033[K%d/%d %s", done, p.n, p.what)
	if done > 0 && sec > 0 {
		rate := float64(done) / sec
		left := time.Duration(float64(p.n-done) / rate * float64(time.Second)).Round(time.Second)
		line += fmt.Sprintf(" (%.1f/s, ETA %s)", rate, left)
	}
	fmt.Fprint(p.io.ErrOut, line)
	p.shown = true
}

func (p *etaProgress) Done() {
	if p.shown {
		fmt.Fprint(p.io.ErrOut, "\r\033[K")
		p.shown = false
	}
}
