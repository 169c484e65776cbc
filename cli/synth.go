package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// SynthOptions are the options of `lldiff synth`.
type SynthOptions struct {
	IO      *IOStreams
	Out     string
	Preset  string
	Type    string
	Vocab   string
	Layers  int
	DModel  int
	Heads   int
	KVHeads int
	HeadDim int
	DFF     int
	Ctx     int
	Seed    uint64
	Untied  bool
	Tied    bool
	Pure    bool
	Force   bool
	// MMProjOut is where --preset smolvlm-tiny writes its projector
	// (synth_vision.go).
	MMProjOut string
	// VocabSize pads the vocabulary with unused tokens (0: the preset's).
	VocabSize int
	// RopeLinear is a linear RoPE scaling factor (0: the preset's).
	RopeLinear float64
}

func newCmdSynth(io *IOStreams, runF func(*SynthOptions) error) *cobra.Command {
	opts := &SynthOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "synth -o FILE [--preset NAME] [--type TYPE] [shape flags]",
		Short: "Write a synthetic model with random weights (developer and benchmark tool)",
		Long: `Write a GGUF with deterministic random weights and a real tokenizer copied
from a vocab-only GGUF. Tests and benchmarks use these to exercise any shape
and quant type without downloads.

Presets: tiny, small, bench-cpu, llama2-7b (llama); gpt2-small (gpt2, the
GPT-2 vocabulary); pythia-70m, pythia-160m (gptneox, the GPT-NeoX
vocabulary); qwen2-tiny, qwen2-0.5b (qwen2) and qwen3-tiny, qwen3-0.6b-shape
(qwen3), with the GPT-2 vocabulary standing in for Qwen's; phi3-tiny,
phi3-mini-shape (phi3), gemma2-tiny, gemma2-2b-shape (gemma2) and gemma3-tiny,
gemma3-1b-shape, gemma3-4b-shape (gemma3; the 4B shape with its linear RoPE
scaling 8 in the global layers), with Llama 2's vocabulary standing in for
theirs. The -shape presets (and qwen2-0.5b) pad the vocabulary with unused
tokens to the real model's size (Qwen 151936, Gemma 2 256000, Gemma 3 262144,
Phi-3 32064), so that the embedding, output matrix and lens cost what they
cost on the real file; --vocab-size sets any size.
Shape flags override the preset.
Types F32, F16, Q8_0 and Q4_0 are written directly; Q4_K (=Q4_K_S), Q4_K_M
and Q6_K are written as F16 and then quantized with llama.cpp's quantizer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Out == "" {
				return usageErr("no output file: pass -o FILE.gguf")
			}
			// a shape flag given as 0 would silently keep the preset's value
			for _, name := range []string{"layers", "d-model", "heads", "kv-heads", "head-dim", "d-ff", "ctx", "vocab-size"} {
				if v, _ := cmd.Flags().GetInt(name); cmd.Flags().Changed(name) && v <= 0 {
					return usageErr("--%s %d: give a positive number, or leave --%s out to keep the preset's", name, v, name)
				}
			}
			if opts.Tied && opts.Untied {
				return usageErr("--tied and --untied contradict each other: give one of them (or neither, for the preset's choice)")
			}
			if runF != nil {
				return runF(opts)
			}
			return synthRun(opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.Out, "output", "o", "", "output GGUF file")
	f.StringVar(&opts.Preset, "preset", "tiny", "shape preset: "+strings.Join(models.SynthPresets(), ", "))
	f.StringVar(&opts.Type, "type", "", "weight type: F32, F16, Q8_0, Q4_0, Q5_0, Q2_K, Q3_K_M, Q4_K, Q4_K_M, Q5_K_M, Q6_K (default: the preset's)")
	f.StringVar(&opts.Vocab, "vocab", "", "vocab-only GGUF to take the tokenizer from (default: the architecture's real vocabulary, built into lldiff: Llama-2 SentencePiece, GPT-2 or GPT-NeoX BPE; GPT-2's for qwen2 and qwen3, Llama 2's for phi3, gemma2 and gemma3)")
	f.IntVar(&opts.VocabSize, "vocab-size", 0, "pad the vocabulary to this many tokens with unused ones, so the embedding and output matrices (and the lens's cost) have a real model's size; tokenization is unchanged (default: the preset's, such as 256000 for gemma2-2b-shape; with --vocab, that file's own size)")
	f.Float64Var(&opts.RopeLinear, "rope-scale-linear", 0, "linear RoPE scaling factor written as rope.scaling.factor, such as 8 for Gemma 3 4B's (gemma3: its global layers only; default: the preset's, none for most)")
	f.IntVar(&opts.Layers, "layers", 0, "layers")
	f.IntVar(&opts.DModel, "d-model", 0, "d_model")
	f.IntVar(&opts.Heads, "heads", 0, "attention heads")
	f.IntVar(&opts.KVHeads, "kv-heads", 0, "KV heads (grouped-query attention)")
	f.IntVar(&opts.HeadDim, "head-dim", 0, "width of one attention head, when the heads need not span d_model (qwen3, gemma2, gemma3; default: the preset's, or d_model/heads)")
	f.IntVar(&opts.DFF, "d-ff", 0, "MLP width")
	f.IntVar(&opts.Ctx, "ctx", 0, "trained context length")
	f.Uint64Var(&opts.Seed, "seed", 1, "random seed")
	f.BoolVar(&opts.Untied, "untied", false, "write a separate output.weight (default: tied to token_embd)")
	f.BoolVar(&opts.Tied, "tied", false, "no output.weight: token_embd is also the unembedding (overrides the preset)")
	f.BoolVar(&opts.Pure, "pure", false, "with K-quant types: quantize every matrix to the type (no llama.cpp mixture)")
	f.BoolVar(&opts.Force, "force", false, "replace an existing output file")
	f.StringVar(&opts.MMProjOut, "mmproj-out", "", "with --preset smolvlm-tiny: where to write the vision projector (mmproj) of the pair")
	return cmd
}

func synthRun(opts *SynthOptions) error {
	if opts.Preset == models.SmolVLMTinyPreset || opts.MMProjOut != "" {
		return synthVisionRun(opts) // synth_vision.go
	}
	spec, err := models.SynthPreset(opts.Preset)
	if err != nil {
		return &UsageError{Err: err}
	}
	for _, o := range []struct {
		v   int
		dst *int
	}{{opts.Layers, &spec.NLayer}, {opts.DModel, &spec.DModel}, {opts.Heads, &spec.NHead}, {opts.KVHeads, &spec.NHeadKV}, {opts.HeadDim, &spec.HeadDim}, {opts.DFF, &spec.DFF}, {opts.Ctx, &spec.NCtx}} {
		if o.v < 0 {
			return usageErr("shape flags take positive numbers")
		}
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if opts.Heads > 0 && opts.KVHeads == 0 {
		spec.NHeadKV = spec.NHead
	}
	spec.Seed = opts.Seed
	if opts.Untied {
		spec.Untied = true
	}
	if opts.Tied {
		spec.Untied = false
	}
	spec.Overwrite = opts.Force
	spec.VocabPath = opts.Vocab
	if opts.Vocab != "" {
		spec.VocabSize = 0 // the given vocabulary's own size, unless --vocab-size says otherwise
	}
	if opts.VocabSize > 0 {
		spec.VocabSize = opts.VocabSize
	}
	if opts.RopeLinear != 0 {
		spec.RopeScaleLinear = opts.RopeLinear // SynthSpec's check refuses bad factors and gpt2
	}
	if err := checkOutFile(opts.Out, "-o", opts.Force); err != nil {
		return err
	}
	typ := strings.ToUpper(opts.Type)
	if typ == "" {
		typ = spec.Type.String()
	}
	if opts.Pure && strings.Contains(typ, "_K") {
		// llama.cpp's quantizer aborts on a row that is not whole blocks
		for _, w := range []struct {
			flag string
			n    int
		}{{"--d-model", spec.DModel}, {"--d-ff", spec.DFF}} {
			if w.n%256 != 0 {
				return usageErr("--type %s --pure needs matrix rows that are multiples of 256 values (one K-quant block), but %s is %d: use multiples of 256, or leave out --pure (llama.cpp then gives such matrices another type)", typ, w.flag, w.n)
			}
		}
	}
	start := time.Now()
	switch typ {
	case "F32", "F16", "Q8_0", "Q4_0":
		spec.Type, err = models.ParseGGMLType(typ)
		if err != nil {
			return &UsageError{Err: err}
		}
		if err := models.WriteSynthetic(opts.Out, spec); err != nil {
			return err
		}
	case "Q4_K", "Q4_K_S", "Q4_K_M", "Q6_K":
		spec.Type = models.F16
		// the F16 model goes to a temporary file of its own, next to the
		// output: a fixed name could be a file of the user's
		tf, err := os.CreateTemp(filepath.Dir(opts.Out), "."+filepath.Base(opts.Out)+".f16-*")
		if err != nil {
			return err
		}
		tmp := tf.Name()
		tf.Close()
		// removed on return, and on SIGINT/SIGTERM too
		defer outfile.Track(tmp)()
		defer os.Remove(tmp)
		spec.Overwrite = true
		if err := models.WriteSynthetic(tmp, spec); err != nil {
			return err
		}
		if err := llamacpp.Quantize(tmp, opts.Out, llamacpp.QuantizeParams{Type: typ, Pure: opts.Pure, Overwrite: opts.Force}); err != nil {
			return err
		}
	default:
		return usageErr("--type %q: choose F32, F16, Q8_0, Q4_0, Q4_K, Q4_K_M or Q6_K", opts.Type)
	}
	st, err := os.Stat(opts.Out)
	if err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.Out, "wrote %s: %s, %d layers, d_model %d, %d heads (%d KV), d_ff %d, %s, %s in %.1fs\n",
		opts.Out, spec.Arch, spec.NLayer, spec.DModel, spec.NHead, spec.NHeadKV, spec.DFF, typ, human(uint64(st.Size())), time.Since(start).Seconds())
	return nil
}
