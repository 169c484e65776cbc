package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/models"
)

// InspectOptions are the options of `lldiff inspect`.
type InspectOptions struct {
	IO   *IOStreams
	Path string
	JSON bool
}

func newCmdInspect(io *IOStreams, runF func(*InspectOptions) error) *cobra.Command {
	opts := &InspectOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "inspect MODEL | -m MODEL",
		Short: "Describe a GGUF model: shape, tokenizer, tensor types, available hooks",
		Long: `Describe a GGUF model from its header alone (no weights are read):
architecture, layers, d_model, heads and KV heads, d_ff, vocabulary and
tokenizer, tensor types with counts and bytes, and the hooks lldiff can
capture with the llama.cpp graph node behind each.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// the model as an argument, or with -m as every other command takes it
			switch {
			case len(args) == 1 && cmd.Flags().Changed("model") && args[0] != opts.Path:
				return usageErr("two models given (-m %s and %s): give one", opts.Path, args[0])
			case len(args) == 1:
				opts.Path = args[0]
			case !cmd.Flags().Changed("model"):
				return usageErr("no model given: lldiff inspect MODEL.gguf (or -m MODEL.gguf)")
			}
			if opts.Path == "" {
				return usageErr("the model path is empty: lldiff inspect MODEL.gguf")
			}
			if runF != nil {
				return runF(opts)
			}
			return inspectRun(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	cmd.Flags().StringVarP(&opts.Path, "model", "m", "", "GGUF model (or control vector) file, instead of the argument")
	return cmd
}

type inspectJSON struct {
	File            string           `json:"file"`
	FileBytes       int64            `json:"file_bytes"`
	GGUFVersion     uint32           `json:"gguf_version"`
	Arch            string           `json:"arch"`
	Name            string           `json:"name"`
	Layers          int              `json:"layers"`
	DModel          int              `json:"d_model"`
	Heads           int              `json:"heads"`
	KVHeads         int              `json:"kv_heads"`
	DHead           int              `json:"d_head"`
	DFF             int              `json:"d_ff"`
	Vocab           int              `json:"vocab"`
	Tokenizer       string           `json:"tokenizer"`
	ContextTrain    int              `json:"context_train"`
	RopeBase        float64          `json:"rope_base"`
	RopeDim         int              `json:"rope_dim"`
	RopeScaling     string           `json:"rope_scaling,omitempty"` // how the file scales RoPE, "" for plain RoPE
	Norm            string           `json:"norm"`
	NormEps         float64          `json:"norm_eps"`
	Positions       string           `json:"positions"`
	Residual        string           `json:"residual"`
	Tied            bool             `json:"tied_embeddings"`
	VocabOnly       bool             `json:"vocab_only"`
	FileType        string           `json:"file_type"`
	Params          uint64           `json:"params"`
	TensorTypes     []tensorTypeJSON `json:"tensor_types"`
	Hooks           []hookInfoJSON   `json:"hooks"`
	Notes           []string         `json:"notes,omitempty"`
	RunnableProblem string           `json:"runnable_problem,omitempty"`
}

type tensorTypeJSON struct {
	Type     string `json:"type"`
	Count    int    `json:"count"`
	Elements uint64 `json:"elements"`
	Bytes    uint64 `json:"bytes"`
}

type hookInfoJSON struct {
	Hook  string `json:"hook"`
	Short string `json:"short"`
	Node  string `json:"node"`
}

// cvecInfoJSON describes a control vector (general.architecture
// controlvector) in inspect's output.
type cvecInfoJSON struct {
	Directions int    `json:"directions"`
	Width      int    `json:"width"`
	Layers     []int  `json:"layers"`
	ModelHint  string `json:"model_hint"`
	// Offset is lldiff.layer_offset, -1 when the file does not say.
	Offset int `json:"layer_offset"`
}

func inspectRun(opts *InspectOptions) error {
	f, err := models.Open(opts.Path)
	if err != nil {
		return err
	}
	if f.Architecture() == "controlvector" {
		return inspectCvec(opts, f)
	}
	info, err := f.Info()
	if err != nil {
		return fmt.Errorf("%s: %w", opts.Path, err)
	}
	doc := inspectJSON{
		File: opts.Path, FileBytes: f.FileSize, GGUFVersion: f.Version, Arch: info.Arch, Name: info.Name,
		Layers: info.NLayer, DModel: info.DModel, Heads: info.NHead, KVHeads: info.NHeadKV, DHead: info.DHead,
		DFF: info.DFF, Vocab: info.NVocab, Tokenizer: info.TokenizerModel, ContextTrain: info.NCtxTrain,
		RopeBase: info.RopeBase, NormEps: info.NormEps, Tied: info.TiedEmbeddings, VocabOnly: info.VocabOnly,
		FileType: info.FileType, Params: info.NParams, RopeDim: info.RopeDim,
		Norm: "RMSNorm", Positions: "rope", Residual: "sequential",
		RopeScaling: ropeScaling(f, info.Arch),
	}
	if info.LayerNorm {
		doc.Norm = "LayerNorm"
	}
	if info.LearnedPositions {
		doc.Positions = "learned"
	}
	if info.ParallelResidual {
		doc.Residual = "parallel"
	}
	var types []models.GGMLType
	for t := range info.TensorTypes {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return info.TensorTypes[types[i]].Bytes > info.TensorTypes[types[j]].Bytes })
	for _, t := range types {
		s := info.TensorTypes[t]
		doc.TensorTypes = append(doc.TensorTypes, tensorTypeJSON{t.String(), s.Count, s.Elements, s.Bytes})
	}
	if err := f.CheckRunnable(); err != nil {
		doc.RunnableProblem = err.Error()
	}
	if ht, err := models.HookTableOf(info); err == nil && !info.VocabOnly {
		doc.Notes = ht.Notes
		for _, k := range ht.Kinds {
			h := models.Hook{Kind: k, Layer: -1}
			hj := hookInfoJSON{Hook: h.Name(), Short: h.Short(), Node: ht.Pattern(k)}
			if k.PerLayer() {
				h.Layer = 0
				hj.Hook = fmt.Sprintf("blocks.L.%s", h.Name()[len("blocks.0."):])
				hj.Short = string(k) + ".L"
			}
			doc.Hooks = append(doc.Hooks, hj)
		}
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	// the text output escapes every string: most come from the file
	out, esc := opts.IO.Out, safetext.Terminal
	fmt.Fprintf(out, "%s: GGUF v%d, %s\n", esc(opts.Path), doc.GGUFVersion, human(uint64(doc.FileBytes)))
	tied := ""
	if doc.Tied {
		tied = ", tied embeddings (no output.weight)"
	}
	// a value the file does not set is said to be unknown, not printed
	// as nothing ("file type ", name "")
	tokenizer := esc(doc.Tokenizer) + " tokenizer"
	if doc.Tokenizer == "" {
		tokenizer = "tokenizer unknown: tokenizer.ggml.model not set"
	}
	if doc.VocabOnly {
		fmt.Fprintf(out, "vocab only (no weights): %s, %d tokens\n", tokenizer, doc.Vocab)
	} else {
		name := ""
		if doc.Name != "" {
			name = fmt.Sprintf(" %q", doc.Name)
		}
		fmt.Fprintf(out, "architecture %s%s, %d layers, d_model %d, %d heads (%d KV heads) of %d, d_ff %d%s\n",
			esc(doc.Arch), name, doc.Layers, doc.DModel, doc.Heads, doc.KVHeads, doc.DHead, doc.DFF, tied)
		pos := fmt.Sprintf("rope base %g", doc.RopeBase)
		switch {
		case info.LearnedPositions:
			pos = "learned positions"
		case doc.RopeDim != doc.DHead:
			pos += fmt.Sprintf(" on %d of %d head dims", doc.RopeDim, doc.DHead)
		}
		if doc.RopeScaling != "" {
			pos += " (" + doc.RopeScaling + ")"
		}
		norm := "norm eps"
		if info.LayerNorm {
			norm = "LayerNorm eps"
		}
		fileType := esc(doc.FileType)
		if doc.FileType == "" {
			fileType = "unknown (general.file_type not set)"
		}
		fmt.Fprintf(out, "vocabulary %d (%s), trained context %d, %s, %s %g, %d parameters, file type %s\n",
			doc.Vocab, tokenizer, doc.ContextTrain, pos, norm, doc.NormEps, doc.Params, fileType)
		if info.ParallelResidual {
			fmt.Fprintln(out, "parallel residual: attention and MLP read the same layer input (no resid_mid)")
		}
	}
	if len(doc.TensorTypes) > 0 {
		var rows [][]string
		for _, t := range doc.TensorTypes {
			rows = append(rows, []string{esc(t.Type), fmt.Sprint(t.Count), fmt.Sprint(t.Elements), human(t.Bytes)})
		}
		if err := table(opts.IO, []string{"type", "tensors", "elements", "bytes"}, rows); err != nil {
			return err
		}
	}
	if len(doc.Hooks) > 0 {
		var rows [][]string
		for _, h := range doc.Hooks {
			rows = append(rows, []string{esc(h.Hook), esc(h.Short), esc(h.Node)})
		}
		if err := table(opts.IO, []string{"hook", "short", "llama.cpp node"}, rows); err != nil {
			return err
		}
		for _, n := range doc.Notes {
			fmt.Fprintln(out, "note:", esc(n))
		}
	}
	if doc.RunnableProblem != "" {
		fmt.Fprintln(out, "cannot run:", esc(doc.RunnableProblem))
	}
	return nil
}

// inspectCvec describes a control vector: it has directions, not layers
// and heads.
func inspectCvec(opts *InspectOptions, f *models.File) error {
	cv, err := contrast.ReadControlVector(opts.Path)
	if err != nil {
		return err
	}
	info := cvecInfoJSON{Directions: len(cv.Directions), Width: cv.NEmbd(), Layers: cv.Layers(), ModelHint: cv.ModelHint, Offset: cv.Offset}
	if opts.JSON {
		return writeJSON(opts.IO.Out, struct {
			File          string       `json:"file"`
			FileBytes     int64        `json:"file_bytes"`
			GGUFVersion   uint32       `json:"gguf_version"`
			Arch          string       `json:"arch"`
			ControlVector cvecInfoJSON `json:"control_vector"`
		}{opts.Path, f.FileSize, f.Version, "controlvector", info})
	}
	out, path := opts.IO.Out, safetext.Terminal(opts.Path)
	fmt.Fprintf(out, "%s: GGUF v%d, %s\n", path, f.Version, human(uint64(f.FileSize)))
	hint := "no model hint (controlvector.model_hint not set)"
	if info.ModelHint != "" {
		hint = fmt.Sprintf("model hint %q", info.ModelHint)
	}
	fmt.Fprintf(out, "control vector: %d directions of %d values at layers %s, %s", info.Directions, info.Width, intRanges(info.Layers), hint)
	if info.Offset >= 0 {
		fmt.Fprintf(out, ", layer offset %d", info.Offset)
	}
	fmt.Fprintf(out, "\nnot a model: steer with it (lldiff steer -m MODEL --cvec %s) or compare it (lldiff vec)\n", path)
	return nil
}

// ropeScaling describes the file's RoPE scaling as llama.cpp reads it:
// <arch>.rope.scaling.type and .factor (or the older .rope.scale_linear),
// YaRN's original context, and per-frequency factors (rope_freqs.weight,
// Llama 3.1's); "" for plain RoPE.
func ropeScaling(f *models.File, arch string) string {
	a := arch + "."
	typ, _ := f.String(a + "rope.scaling.type")
	factor, ok := f.Float(a + "rope.scaling.factor")
	if !ok {
		factor, ok = f.Float(a + "rope.scale_linear")
	}
	var parts []string
	switch {
	case typ == "none":
	case ok && factor != 0 && factor != 1:
		if typ == "" {
			typ = "linear" // llama.cpp's default scaling type
		}
		s := fmt.Sprintf("%s scaling ×%g", safetext.Terminal(typ), factor)
		if n, ok := f.Int(a + "rope.scaling.original_context_length"); ok && n > 0 {
			s += fmt.Sprintf(" of a trained context of %d", n)
		}
		if arch == "gemma3" {
			s += " in the global layers (the sliding-window ones unscaled)"
		}
		parts = append(parts, s)
	case typ != "" && typ != "linear":
		parts = append(parts, safetext.Terminal(typ)+" scaling")
	}
	if _, ok := f.Tensor("rope_freqs.weight"); ok {
		parts = append(parts, "per-frequency factors (rope_freqs.weight)")
	}
	return strings.Join(parts, "; ")
}
