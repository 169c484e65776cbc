package models

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/lldiff/lldiff"
)

// synthVocabs are the shipped vocabularies of each architecture
// WriteSynthetic writes, relative to testdata/models.
var synthVocabs = map[string]string{
	"llama":   "vocab/ggml-vocab-llama-spm.gguf",
	"gpt2":    "vocab/ggml-vocab-gpt-2.gguf",
	"gptneox": "vocab/ggml-vocab-gpt-neox.gguf",
	// Qwen2's own vocabulary (151k tokens) is not shipped: its synthetic
	// models use GPT-2's byte-level BPE, with the pre-tokenizer set to
	// "qwen2" (see newSynthWriter).
	"qwen2": "vocab/ggml-vocab-gpt-2.gguf",
	// Qwen3's vocabulary is Qwen2's: the same stand-in.
	"qwen3": "vocab/ggml-vocab-gpt-2.gguf",
	// Phi-3's vocabulary is Llama 2's SentencePiece with 64 added tokens
	// (32064): Llama 2's stands in.
	"phi3": "vocab/ggml-vocab-llama-spm.gguf",
	// Gemma's SentencePiece vocabulary (256000 tokens) is not shipped:
	// Llama 2's stands in.
	"gemma2": "vocab/ggml-vocab-llama-spm.gguf",
	"gemma3": "vocab/ggml-vocab-llama-spm.gguf", // Gemma 3's has 262144 tokens
}

// synthArchs are the architectures WriteSynthetic writes, in the order
// errors list them.
var synthArchs = []string{"llama", "gpt2", "gptneox", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"}

// ShippedVocab parses the vocabulary of arch that is compiled into the
// binary (see SynthVocab).
func ShippedVocab(arch string) (*File, error) {
	name := SynthVocab(arch)
	if name == "" {
		return nil, fmt.Errorf("no shipped vocabulary for architecture %q: pass a vocab-only GGUF (SynthSpec.VocabPath, lldiff synth --vocab)", arch)
	}
	data, err := lldiff.VocabFile(name)
	if err != nil {
		return nil, fmt.Errorf("shipped vocabulary %s: %w", name, err)
	}
	return parse(bytes.NewReader(data), int64(len(data)), "(built-in) "+name)
}

// SynthVocab returns the name, relative to testdata/models, of the shipped
// vocabulary WriteSynthetic uses for arch when SynthSpec.VocabPath is
// empty: the Llama 2 SentencePiece vocabulary for llama, GPT-2's BPE for
// gpt2 and, standing in for Qwen's, for qwen2 and qwen3, GPT-NeoX's BPE (Pythia's)
// for gptneox. The files are compiled into
// the binary (package lldiff at the module root). It returns "" for other
// architectures.
func SynthVocab(arch string) string {
	if arch == "" {
		arch = "llama"
	}
	return synthVocabs[arch]
}

// Standard deviations of the synthetic gpt2 and gptneox weights that llama
// has no counterpart of.
const (
	synthBiasSigma = 0.1 // every bias, norm biases included
	synthPosSigma  = 0.5 // position_embd.weight (gpt2)
	// synthHeadNormSigma is the deviation of qwen3's per-head q and k norm
	// weights about 1.
	synthHeadNormSigma = 0.1
)

// writeSyntheticLayerNorm writes a gpt2 or gptneox model, the tensors and
// keys llama.cpp's loader reads for LLM_ARCH_GPT2 and LLM_ARCH_GPTNEOX:
//
//	token_embd.weight        [d, vocab]         σ 1
//	position_embd.weight     [d, ctx]           σ 0.5 (gpt2 only)
//	output_norm.weight/bias  [d]                LayerNorm γ and β
//	output.weight            [d, vocab]         gptneox always, gpt2 when untied
//	blk.L.attn_norm.weight/bias, blk.L.ffn_norm.weight/bias  [d]
//	blk.L.attn_qkv.weight    [d, d + 2·kv]      rows: Q of all heads, then K, then V
//	blk.L.attn_output.weight [d, d]
//	blk.L.ffn_up.weight      [d, d_ff]
//	blk.L.ffn_down.weight    [d_ff, d]
//
// and a bias of length out beside each matrix (blk.L.attn_qkv.bias, ...).
// Matrices are drawn as for llama; LayerNorm weights are 1 + 0.02·N(0,1)
// and every bias is 0.1·N(0,1), all F32, so that a forgotten bias or
// position shows as an error of order 0.1, far above any rounding.
func writeSyntheticLayerNorm(path string, s SynthSpec, vocab *File, nVocab int) error {
	dHead := s.DModel / s.NHead
	a := s.Arch + "."
	archKVs := []KV{{a + "attention.layer_norm_epsilon", float32(s.NormEps)}}
	if s.Arch == "gptneox" {
		archKVs = append(archKVs,
			KV{a + "rope.dimension_count", uint32(s.RopeDim)},
			KV{a + "rope.freq_base", float32(s.RopeBase)},
			KV{a + "use_parallel_residual", !s.SequentialResidual},
		)
	}
	w, err := newSynthWriter(s, vocab, nVocab, archKVs...)
	if err != nil {
		return err
	}

	d, v, ff := uint64(s.DModel), uint64(nVocab), uint64(s.DFF)
	qkv := d + 2*uint64(s.NHeadKV*dHead)
	matrix := w.matrix
	vector := func(name string, n uint64, mean, sigma float64) error {
		return w.AddTensorFunc(name, F32, []uint64{n}, func(out io.Writer) error {
			return generateVector(out, n, mean, sigma, tensorSeed(s.Seed, name))
		})
	}
	// linear adds prefix.weight [in, out] and prefix.bias [out].
	linear := func(prefix string, in, out uint64) error {
		return errors.Join(matrix(prefix+".weight", []uint64{in, out}, 1/math.Sqrt(float64(in))),
			vector(prefix+".bias", out, 0, synthBiasSigma))
	}
	norm := func(prefix string) error {
		return errors.Join(vector(prefix+".weight", d, 1, 0.02), vector(prefix+".bias", d, 0, synthBiasSigma))
	}
	err = matrix("token_embd.weight", []uint64{d, v}, 1)
	if s.Arch == "gpt2" {
		err = errors.Join(err, matrix("position_embd.weight", []uint64{d, uint64(s.NCtx)}, synthPosSigma))
	}
	err = errors.Join(err, norm("output_norm"))
	if s.Untied {
		err = errors.Join(err, matrix("output.weight", []uint64{d, v}, 1/math.Sqrt(float64(d))))
	}
	for il := range s.NLayer {
		p := fmt.Sprintf("blk.%d.", il)
		err = errors.Join(err,
			norm(p+"attn_norm"),
			linear(p+"attn_qkv", d, qkv),
			linear(p+"attn_output", d, d),
			norm(p+"ffn_norm"),
			linear(p+"ffn_up", d, ff),
			linear(p+"ffn_down", ff, d),
		)
	}
	if err != nil {
		return err
	}
	return w.WriteFile(path)
}

// generateVector writes n F32 values mean + sigma·N(0,1).
func generateVector(w io.Writer, n uint64, mean, sigma float64, seed uint64) error {
	r := newRNG(seed)
	b := make([]byte, 4*n)
	for i := uint64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(mean+sigma*float64(r.normal()))))
	}
	_, err := w.Write(b)
	return err
}
