package cli

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/llamacpp"
)

// modelFlags are the flags of every command that runs a model, spelled as
// llama.cpp spells them.
type modelFlags struct {
	Model        string
	GPULayers    int
	Threads      int
	NCtx         int
	NBatch       int
	NUBatch      int
	KVType       string
	NoMmap       bool
	Mmap         bool
	NoRepack     bool
	BOS          string
	ParseSpecial bool
}

func (f *modelFlags) register(cmd *cobra.Command, run bool) {
	fl := cmd.Flags()
	fl.StringVarP(&f.Model, "model", "m", "", "GGUF model file (required)")
	fl.StringVar(&f.BOS, "bos", "auto", "add a BOS token: auto (as the model says), yes, no")
	fl.BoolVar(&f.ParseSpecial, "special", false, "parse special-token text such as <s> as control tokens")
	if !run {
		return
	}
	fl.IntVarP(&f.GPULayers, "n-gpu-layers", "g", 0, "layers to offload to the GPU (999: all)")
	fl.IntVar(&f.GPULayers, "ngl", 0, "same as --n-gpu-layers")
	fl.IntVarP(&f.Threads, "threads", "t", 0, "CPU threads (default: physical cores)")
	fl.IntVarP(&f.NCtx, "ctx-size", "c", 0, "context size in tokens (default: what the prompts need)")
	fl.IntVarP(&f.NBatch, "batch-size", "b", 0, "tokens per llama_decode call (default: the context size)")
	fl.IntVarP(&f.NUBatch, "ubatch-size", "u", 0, "tokens per compute graph (default 512)")
	fl.StringVar(&f.KVType, "kv-type", "f32", "KV cache type: f32 (exact activations) or f16 (half the memory, ~1e-3 differences)")
	fl.BoolVar(&f.NoMmap, "no-mmap", false, "read the model into memory instead of mapping it")
	fl.BoolVar(&f.Mmap, "mmap", false, "map the model even when its matrices are repacked (memory: about twice the file)")
	fl.BoolVar(&f.NoRepack, "no-repack", false, "keep Q4_0/Q4_K/Q2_K/IQ4_NL matrices as stored (slower prompts; the file stays mapped)")
}

func (f *modelFlags) check() error {
	if f.Model == "" {
		return usageErr("no model given: pass -m MODEL.gguf")
	}
	switch f.BOS {
	case "auto", "yes", "no":
	default:
		return usageErr("--bos %q: use auto, yes or no", f.BOS)
	}
	if f.Mmap && f.NoMmap {
		return usageErr("--mmap and --no-mmap contradict each other: give one")
	}
	if f.NCtx < 0 || f.Threads < 0 || f.GPULayers < 0 || f.NBatch < 0 || f.NUBatch < 0 {
		return usageErr("-c, -t, -ngl, -b and -u take numbers >= 0")
	}
	if f.Threads > llamacpp.MaxThreads {
		return usageErr("-t %d: ggml runs at most %d threads; this machine has %d physical cores (leave -t out to use them all)", f.Threads, llamacpp.MaxThreads, llamacpp.PhysicalCores())
	}
	// llama.cpp keeps these in 32-bit integers: larger values would wrap
	// around to small ones
	for _, v := range []struct {
		flag string
		n    int
	}{{"-c", f.NCtx}, {"-b", f.NBatch}, {"-u", f.NUBatch}, {"-ngl", f.GPULayers}} {
		if v.n > math.MaxInt32 {
			return usageErr("%s %d is too large: llama.cpp takes at most %d", v.flag, v.n, math.MaxInt32)
		}
	}
	switch strings.ToLower(f.KVType) {
	case "", "f32", "f16":
	default:
		return usageErr("--kv-type %q: use f32 or f16", f.KVType)
	}
	return nil
}

func (f *modelFlags) tokenizeOptions() llamacpp.TokenizeOptions {
	o := llamacpp.TokenizeOptions{ParseSpecial: f.ParseSpecial}
	switch f.BOS {
	case "yes":
		o.BOS = llamacpp.BOSYes
	case "no":
		o.BOS = llamacpp.BOSNo
	}
	return o
}

func (f *modelFlags) load(vocabOnly bool) (*llamacpp.Model, error) {
	return llamacpp.LoadModel(f.Model, llamacpp.ModelParams{GPULayers: f.GPULayers, NoMmap: f.NoMmap, Mmap: f.Mmap, NoRepack: f.NoRepack, VocabOnly: vocabOnly})
}

// engine returns the engine that runs m with these flags.
func (f *modelFlags) engine(m *llamacpp.Model) *llamacpp.Engine {
	return llamacpp.NewEngine(m, llamacpp.EngineParams{
		Context: llamacpp.ContextParams{NCtx: f.NCtx, NBatch: f.NBatch, NUBatch: f.NUBatch, Threads: f.Threads, KVType: f.KVType},
		Unembed: llamacpp.UnembedOptions{Threads: f.Threads, GPU: m.GPULayers() > 0, NoMmap: f.NoMmap},
	})
}

// context creates a context large enough for the given sequences decoded
// nSeq at a time, unless -c says otherwise.
func (f *modelFlags) context(m *llamacpp.Model, seqs [][]int32, nSeq int) (*llamacpp.Context, error) {
	c, err := f.engine(m).NewContext(seqs, nSeq)
	return c, flagAdvice(err)
}

// promptFileFlag declares --prompt-file, which capture and steer take
// instead of the prompt argument.
func promptFileFlag(cmd *cobra.Command, file *string) {
	cmd.Flags().StringVar(file, "prompt-file", "", "read the prompt from a file")
}

// needPrompt returns a usage error when a command that takes one prompt
// got neither the argument nor --prompt-file.
func needPrompt(args []string, file string) error {
	if len(args) == 0 && file == "" {
		return usageErr("no prompt: give it as an argument or with --prompt-file")
	}
	return nil
}

// readOnePrompt returns the prompt of a command that takes one: text, or
// the content of file; a usage error when it has no text.
func readOnePrompt(text, file string) (string, error) {
	prompt, err := readPrompt(text, file, "the prompt")
	if err != nil {
		return "", err
	}
	// spaces are text (SentencePiece gives them tokens): only no text at
	// all is refused
	if prompt == "" {
		return "", usageErr("the prompt is empty: give some text")
	}
	return prompt, nil
}

// tokenizePrompts tokenizes each prompt and returns a usage error when one
// gives no tokens.
func tokenizePrompts(m *llamacpp.Model, to llamacpp.TokenizeOptions, prompts ...string) ([][]int32, error) {
	ids, err := analysis.TokenizePrompts(m, to, prompts...)
	return ids, flagAdvice(err)
}

// maxPromptFile is the largest prompt file read: far more tokens than any
// model's context, small enough that /dev/zero or a model file given by
// mistake fails at once instead of filling the memory.
const maxPromptFile = 16 << 20

// readSmallFile reads a file of at most limit bytes; a larger file, or a
// directory, is a usage error.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, usageErr("%s is a directory: give the path of a text file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, usageErr("%s is larger than %d MiB: a prompt file holds one prompt as text", path, limit>>20)
	}
	return b, nil
}

// readPrompt returns text, or the content of file when text is empty.
func readPrompt(text, file, what string) (string, error) {
	if file != "" {
		if text != "" {
			return "", usageErr("%s given both as text and with a file: choose one", what)
		}
		b, err := readSmallFile(file, maxPromptFile)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", what, err)
		}
		// a file saved on Windows: a byte-order mark and CRLF line ends
		// would be tokenized as text (<0xEF> <0xBB> <0xBF>, <0x0D>)
		text := strings.TrimPrefix(string(b), "\ufeff")
		text = strings.ReplaceAll(text, "\r\n", "\n")
		return strings.TrimRight(text, "\n"), nil
	}
	return text, nil
}

func human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
