package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// CaptureOptions are the options of `lldiff capture`.
type CaptureOptions struct {
	IO         *IOStreams
	Model      modelFlags
	Vision     visionFlags
	Prompt     string
	PromptFile string
	Hooks      string
	OutDir     string
	Force      bool
	JSON       bool
	// Dataset holds --prompts and its flags (cli/capture_dataset.go).
	Dataset captureDatasetFlags
}

func newCmdCapture(io *IOStreams, runF func(*CaptureOptions) error) *cobra.Command {
	opts := &CaptureOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "capture -m MODEL [--hooks LIST] -o DIR PROMPT",
		Short: "Run a prompt and save activations as .npy files",
		Long: `Run one prompt through the model and write each captured activation to DIR
as a float32 .npy file of shape [n_tokens, width] (numpy.load reads it), plus
DIR/index.json listing every file with its hook, layer, shape and size in
bytes, and the prompt's tokens. DIR is written beside its path and moved into
place when complete, under a lock: an interrupted or failed run leaves what
was there (with --force, files the run does not write are kept). Rows are
written as they are computed, one ubatch at a time (-u; by default sized so
that one ubatch's rows stay near 256 MiB): a long prompt needs memory for the
model, the KV cache and one ubatch, not for all its activations.

Hooks: full TransformerLens names (blocks.3.hook_resid_post) or short forms
(resid_post.3; resid_post = every layer; resid_post.-1 = last layer). Kinds:
resid_pre, resid_mid, resid_post, attn_out, mlp_out, z (heads before W_O),
ln_final, logits.

Datasets: --prompts FILE captures every prompt of FILE (one per line, or
.jsonl) and streams the activations at --pos (default all) to size-capped
safetensors files DIR/shard-00000.safetensors, ... with DIR/index.json
(prompts, token ids, row offsets); safetensors.numpy.load_file and torch
read them. --shard K/N captures one shard of the prompts (docs/cluster.md).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Prompt = args[0]
			}
			if err := opts.Model.check(); err != nil {
				return err
			}
			opts.Model.warnLimits(io)
			if opts.Dataset.Prompts != "" {
				if err := opts.Dataset.check(args, opts); err != nil {
					return err
				}
			} else if err := needPrompt(args, opts.PromptFile); err != nil {
				return err
			}
			if opts.OutDir == "" {
				return usageErr("no output directory: pass -o DIR")
			}
			if runF != nil {
				return runF(opts)
			}
			if opts.Dataset.Prompts != "" {
				return captureDatasetRun(opts)
			}
			return captureRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	opts.Vision.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.Hooks, "hooks", "resid_post", "comma-separated hooks to capture")
	f.StringVarP(&opts.OutDir, "output", "o", "", "output directory (created; must be empty unless --force)")
	promptFileFlag(cmd, &opts.PromptFile)
	f.BoolVar(&opts.Force, "force", false, "write into a non-empty output directory, replacing files of the same name")
	f.BoolVar(&opts.JSON, "json", false, "print the index as JSON on stdout")
	registerDatasetFlags(cmd, &opts.Dataset)
	return cmd
}

// CaptureIndex is the content of index.json.
type CaptureIndex struct {
	Model  string           `json:"model"`
	Arch   string           `json:"arch"`
	Prompt string           `json:"prompt"`
	Tokens []analysis.Token `json:"tokens"`
	Files  []CaptureFile    `json:"files"`
}

// CaptureFile describes one .npy file. Bytes is the file's size: a file
// of another size is not the one the index describes (truncated, or
// replaced by a later run).
type CaptureFile struct {
	File  string `json:"file"`
	Hook  string `json:"hook"`
	Kind  string `json:"kind"`
	Layer int    `json:"layer"`
	Shape []int  `json:"shape"`
	Bytes int64  `json:"bytes"`
}

func captureRun(opts *CaptureOptions) error {
	prompt, err := readOnePrompt(opts.Prompt, opts.PromptFile)
	if err != nil {
		return err
	}
	if err := checkOutDir(opts.OutDir, "-o", opts.Force); err != nil {
		return err
	}
	// the output is staged beside -o and locked from here on: a second
	// capture into the same directory fails now instead of mixing its
	// files in, and an interrupted run leaves what was there
	outDir, err := openOutDir(opts.OutDir, "-o", opts.Force)
	if err != nil {
		return err
	}
	defer outDir.Abort()
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	closeVision, err := opts.Vision.attach(m, opts.Model.Threads)
	if err != nil {
		return err
	}
	defer closeVision()
	hooks, err := models.ParseHooks(opts.Hooks, m.NLayer())
	if err != nil {
		return &UsageError{Err: err}
	}
	for _, h := range hooks {
		if err := m.Hooks.Check(h.Kind); err != nil {
			return &UsageError{Err: err}
		}
	}
	seqs, err := tokenizePrompts(m, opts.Model.tokenizeOptions(), prompt)
	if err != nil {
		return err
	}
	ids := seqs[0]
	flags := opts.Model
	if flags.NUBatch == 0 {
		// rows go to their files one ubatch at a time (streamCapture):
		// a ubatch small enough that its rows stay near
		// llamacpp.DefaultStreamBytes, however long the prompt
		flags.NUBatch = m.StreamUBatch(hooks, 0)
	}
	ctx, err := flags.context(m, [][]int32{ids}, 1)
	if err != nil {
		return err
	}
	defer ctx.Close()
	sc, err := streamCapture(outDir, ctx, ids, m.NLayer(), hooks)
	if err != nil {
		return err
	}
	// a model that produces NaN is worth capturing (to see where it
	// starts), but not without saying so
	nanWarning := ""
	if sc.nonFinite != nil {
		if err := analysis.CheckFinite(opts.Model.engine(m), sc.nonFinite); err != nil {
			nanWarning = err.Error()
		}
	}
	idx := CaptureIndex{Model: opts.Model.Model, Arch: m.Arch(), Prompt: prompt, Tokens: analysis.Tokens(m, ids), Files: sc.files}
	if err := writeStagedJSON(outDir, idx); err != nil {
		return err
	}
	if err := outDir.Commit(); err != nil {
		return err
	}
	if opts.JSON {
		if nanWarning != "" {
			fmt.Fprintln(opts.IO.ErrOut, "warning:", nanWarning)
		}
		return writeJSON(opts.IO.Out, idx)
	}
	out := opts.IO.Out
	// image positions show as one span each: [image 1: 64 positions]
	pieces := analysis.TokenView(idx.Tokens)
	fmt.Fprintf(out, "prompt %q → %d tokens: %s\n", prompt, len(ids), strings.Join(pieces, " "))
	var rows [][]string
	for i, cf := range idx.Files {
		rows = append(rows, []string{cf.Hook, fmt.Sprintf("%d×%d", cf.Shape[0], cf.Shape[1]), fmt.Sprintf("%.4g", diff.Norm(sc.last[hooks[i]])), cf.File})
	}
	if err := table(opts.IO, []string{"hook", "shape", "‖last row‖", "file"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %d activations and index.json to %s\n", len(idx.Files), opts.OutDir)
	if nanWarning != "" {
		fmt.Fprintln(opts.IO.ErrOut, "warning:", nanWarning)
	}
	return nil
}
