package models

import (
	"fmt"
	"strconv"
)

// TypeStat counts the tensors of one ggml type in a file.
type TypeStat struct {
	Count    int    // number of tensors
	Elements uint64 // total elements
	Bytes    uint64 // total bytes of data
}

// Info describes the model in a GGUF file, read from its metadata and
// tensor table.
type Info struct {
	Arch string // general.architecture
	Name string // general.name

	NLayer    int // <arch>.block_count
	DModel    int // <arch>.embedding_length
	NHead     int // <arch>.attention.head_count (layer 0 when per layer)
	NHeadKV   int // <arch>.attention.head_count_kv, default NHead
	DHead     int // <arch>.attention.key_length, default DModel/NHead
	DFF       int // <arch>.feed_forward_length (layer 0 when per layer)
	NVocab    int // number of tokenizer.ggml.tokens
	NCtxTrain int // <arch>.context_length

	// RopeBase and RopeDim are 0 for architectures without rotary
	// embeddings (gpt2).
	RopeBase float64 // <arch>.rope.freq_base, default 10000
	RopeDim  int     // <arch>.rope.dimension_count, default DHead
	NormEps  float64 // <arch>.attention.layer_norm_rms_epsilon or .layer_norm_epsilon

	// LayerNorm reports that the model normalizes with LayerNorm (mean
	// subtracted, weight and bias) rather than RMSNorm: gpt2 and gptneox.
	LayerNorm bool
	// LearnedPositions reports learned absolute position embeddings
	// (position_embd.weight, gpt2): positions past NCtxTrain do not exist.
	LearnedPositions bool
	// ParallelResidual is gptneox.use_parallel_residual: attention and the
	// MLP read the same layer input and there is no resid_mid.
	ParallelResidual bool

	TokenizerModel string // tokenizer.ggml.model: llama, gpt2, ...
	BOS, EOS       int    // token ids, -1 when unset
	// AddBOS is tokenizer.ggml.add_bos_token, or when missing true for the
	// llama (SentencePiece) tokenizer and false otherwise, as llama.cpp
	// does for most vocabularies.
	AddBOS bool

	// TiedEmbeddings reports that the file has weights but no
	// output.weight, so token_embd.weight is also the unembedding.
	TiedEmbeddings bool
	// VocabOnly reports a file without tensors, such as llama.cpp's
	// ggml-vocab-*.gguf: its hyperparameters describe a model whose
	// weights are not there.
	VocabOnly bool

	FileType    string // general.file_type as a name, such as "Q8_0"; "" when missing
	NParams     uint64 // elements of all tensors
	NBytes      uint64 // bytes of all tensor data
	TensorTypes map[GGMLType]TypeStat
}

// ropelessArchs are architectures with learned or no position embeddings.
var ropelessArchs = map[string]bool{
	"gpt2": true, "bert": true, "nomic-bert": true, "jina-bert-v2": true,
	"starcoder": true, "bloom": true, "mpt": true, "t5": true, "t5encoder": true,
}

// layerNormArchs are the supported architectures whose norms are LayerNorm
// with a bias.
var layerNormArchs = map[string]bool{"gpt2": true, "gptneox": true}

// Info describes the model in f. It fails when general.architecture is
// missing or a hyperparameter has a non-numeric type; missing
// hyperparameters are left 0 (CheckRunnable reports them).
func (f *File) Info() (*Info, error) {
	in := &Info{TensorTypes: map[GGMLType]TypeStat{}, BOS: -1, EOS: -1}
	in.Arch = f.Architecture()
	if in.Arch == "" {
		return nil, &FormatError{Path: f.Path, Problem: "no general.architecture key: the file does not say what model it holds", Fix: fixNotGGUF}
	}
	in.Name, _ = f.String("general.name")
	a := in.Arch + "."
	var err error
	get := func(key string, def int) int {
		if err != nil {
			return 0
		}
		var v int
		v, err = f.layerUint(key, 0, def)
		return v
	}
	in.NLayer = get(a+"block_count", 0)
	in.DModel = get(a+"embedding_length", 0)
	in.NHead = get(a+"attention.head_count", 0)
	in.NHeadKV = get(a+"attention.head_count_kv", in.NHead)
	in.DFF = get(a+"feed_forward_length", 0)
	in.NCtxTrain = get(a+"context_length", 0)
	def := 0
	if in.NHead > 0 {
		def = in.DModel / in.NHead
	}
	in.DHead = get(a+"attention.key_length", def)
	if !ropelessArchs[in.Arch] {
		in.RopeDim = get(a+"rope.dimension_count", in.DHead)
		in.RopeBase = 10000
		if v, ok := f.Get(a + "rope.freq_base"); ok {
			if in.RopeBase, ok = f.Float(a + "rope.freq_base"); !ok {
				return nil, wrongType(f, a+"rope.freq_base", v, "float32")
			}
		}
	}
	if err != nil {
		return nil, err
	}
	for _, k := range []string{a + "attention.layer_norm_rms_epsilon", a + "attention.layer_norm_epsilon"} {
		if v, ok := f.Get(k); ok {
			if in.NormEps, ok = f.Float(k); !ok {
				return nil, wrongType(f, k, v, "float32")
			}
			break
		}
	}

	in.LayerNorm = layerNormArchs[in.Arch]
	in.LearnedPositions = in.Arch == "gpt2"
	if in.Arch == "gptneox" {
		in.ParallelResidual, _ = f.Bool(a + "use_parallel_residual")
	}

	in.TokenizerModel, _ = f.String("tokenizer.ggml.model")
	if toks, ok := f.Get("tokenizer.ggml.tokens"); ok {
		s, ok := toks.([]string)
		if !ok {
			return nil, wrongType(f, "tokenizer.ggml.tokens", toks, "array of string")
		}
		in.NVocab = len(s)
	}
	in.BOS = f.tokenID("tokenizer.ggml.bos_token_id")
	in.EOS = f.tokenID("tokenizer.ggml.eos_token_id")
	if b, ok := f.Bool("tokenizer.ggml.add_bos_token"); ok {
		in.AddBOS = b
	} else {
		in.AddBOS = in.TokenizerModel == "llama"
	}

	in.VocabOnly = len(f.Tensors) == 0
	_, hasOutput := f.Tensor("output.weight")
	in.TiedEmbeddings = !in.VocabOnly && !hasOutput
	if ft, ok := f.Uint("general.file_type"); ok {
		in.FileType = FileTypeName(ft)
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		s := in.TensorTypes[t.Type]
		s.Count++
		s.Elements += t.NumElements()
		s.Bytes += t.Size
		in.TensorTypes[t.Type] = s
		in.NParams += t.NumElements()
		in.NBytes += t.Size
	}
	return in, nil
}

// tokenID returns an integer token id key, or -1.
func (f *File) tokenID(key string) int {
	v, ok := f.Int(key)
	if !ok || v < 0 || v > 1<<31-1 {
		return -1
	}
	return int(v)
}

// layerUint returns the integer hyperparameter key for layer il. The key may
// hold one integer for all layers or an array with one per layer, as
// llama.cpp allows for head counts and feed-forward lengths. def is
// returned when the key is missing.
func (f *File) layerUint(key string, il, def int) (int, error) {
	v, ok := f.Get(key)
	if !ok {
		return def, nil
	}
	if u, ok := toUint(v); ok {
		if u > 1<<31-1 {
			return 0, &FormatError{Path: f.Path, Problem: fmt.Sprintf("%s is %d, absurdly large", key, u), Fix: fixCorrupt}
		}
		return int(u), nil
	}
	var u uint64
	switch x := v.(type) {
	case []uint32:
		if il >= len(x) {
			return 0, &FormatError{Path: f.Path, Problem: fmt.Sprintf("%s has %d per-layer values, none for layer %d", key, len(x), il), Fix: fixCorrupt}
		}
		u = uint64(x[il])
	case []int32:
		if il >= len(x) || x[il] < 0 {
			return 0, &FormatError{Path: f.Path, Problem: fmt.Sprintf("%s has no valid value for layer %d", key, il), Fix: fixCorrupt}
		}
		u = uint64(x[il])
	default:
		return 0, wrongType(f, key, v, "uint32")
	}
	if u > 1<<31-1 {
		return 0, &FormatError{Path: f.Path, Problem: fmt.Sprintf("%s[%d] is %d, absurdly large", key, il, u), Fix: fixCorrupt}
	}
	return int(u), nil
}

func wrongType(f *File, key string, v any, want string) error {
	return &FormatError{Path: f.Path, Problem: fmt.Sprintf("metadata key %s has type %s, want %s", key, valueTypeName(v), want), Fix: fixCorrupt}
}

// llama_ftype values (general.file_type) and their names.
var fileTypeNames = map[uint64]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
	10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
	16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
	22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
	28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
	37: "TQ2_0", 38: "MXFP4_MOE",
}

// FileTypeName returns the name of a llama_ftype value (general.file_type),
// such as "Q4_K_M", or "unknown(n)".
func FileTypeName(ft uint64) string {
	if s, ok := fileTypeNames[ft]; ok {
		return s
	}
	return "unknown(" + strconv.FormatUint(ft, 10) + ")"
}

// FileTypeFor returns the llama_ftype (general.file_type) of a model whose
// matrices are all of type t, and false when llama.cpp has none for t.
func FileTypeFor(t GGMLType) (uint32, bool) {
	switch t {
	case F32:
		return 0, true
	case F16:
		return 1, true
	case Q4_0:
		return 2, true
	case Q4_1:
		return 3, true
	case Q8_0:
		return 7, true
	case Q5_0:
		return 8, true
	case Q5_1:
		return 9, true
	case BF16:
		return 32, true
	}
	return 0, false
}
