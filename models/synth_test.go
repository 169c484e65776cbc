package models

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// tinySpec is a small shape with GQA and d_ff != d_model, so that a
// transposed dimension shows.
func tinySpec(t testing.TB, typ GGMLType) SynthSpec {
	return SynthSpec{
		NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, DFF: 96, NCtx: 256,
		VocabPath: testmodels.Path(t, testmodels.VocabLlamaSPM), Type: typ, Seed: 42,
	}
}

func writeSynth(t *testing.T, spec SynthSpec) *File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "synth.gguf")
	if err := WriteSynthetic(p, spec); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestWriteSynthetic(t *testing.T) {
	vocab, err := Open(testmodels.Path(t, testmodels.VocabLlamaSPM))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range synthTypes {
		for _, untied := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/untied=%v", typ, untied), func(t *testing.T) {
				spec := tinySpec(t, typ)
				spec.Untied = untied
				f := writeSynth(t, spec)
				if err := f.CheckRunnable(); err != nil {
					t.Fatalf("CheckRunnable() = %v", err)
				}
				in, err := f.Info()
				if err != nil {
					t.Fatal(err)
				}
				want := Info{
					Arch: "llama", Name: "synthetic-llama-2x64-" + typ.String(),
					NLayer: 2, DModel: 64, NHead: 4, NHeadKV: 2, DHead: 16, DFF: 96, NVocab: 32000, NCtxTrain: 256,
					RopeBase: 10000, RopeDim: 16, NormEps: 1e-5, TokenizerModel: "llama", BOS: 1, EOS: 2, AddBOS: true,
					TiedEmbeddings: !untied, FileType: typ.String(),
				}
				nNorm := uint64(64 * 5)
				nMat := uint64(64*32000 + 2*(64*64*2+64*32*2+64*96*3))
				if untied {
					nMat += 64 * 32000
				}
				want.NParams = nNorm + nMat
				matBytes, _ := typ.RowSize(nMat)
				want.NBytes = 4*nNorm + matBytes
				want.TensorTypes = map[GGMLType]TypeStat{typ: {15, nMat, matBytes}}
				if untied {
					want.TensorTypes[typ] = TypeStat{16, nMat, matBytes}
				}
				if typ == F32 {
					want.TensorTypes[F32] = TypeStat{20 + btoi(untied), nMat + nNorm, 4 * (nMat + nNorm)}
				} else {
					want.TensorTypes[F32] = TypeStat{5, nNorm, 4 * nNorm}
				}
				if !reflect.DeepEqual(*in, want) {
					t.Errorf("Info() =\n%+v\nwant\n%+v", *in, want)
				}
				// The tokenizer is the vocab file's, key for key.
				n := 0
				for _, kv := range vocab.KVs {
					if !strings.HasPrefix(kv.Key, "tokenizer.") {
						continue
					}
					n++
					if got, ok := f.Get(kv.Key); !ok || !reflect.DeepEqual(got, kv.Value) {
						t.Errorf("%s not copied from the vocabulary", kv.Key)
					}
				}
				if n < 7 {
					t.Errorf("only %d tokenizer keys in the vocab file", n)
				}
				if v, ok := f.Uint("llama.vocab_size"); !ok || v != 32000 {
					t.Errorf("llama.vocab_size = %d, %v", v, ok)
				}
				if v, ok := f.Uint("lldiff.synthetic.seed"); !ok || v != 42 {
					t.Errorf("lldiff.synthetic.seed = %d, %v", v, ok)
				}
				q, _ := f.Tensor("blk.1.attn_output.weight")
				if q.Type != typ || !equalDims(q.Dims, []uint64{64, 64}) {
					t.Errorf("attn_output is %s %v", q.Type, q.Dims)
				}
				if norm, _ := f.Tensor("blk.0.ffn_norm.weight"); norm.Type != F32 {
					t.Errorf("ffn_norm is %s, want F32", norm.Type)
				}
			})
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSyntheticDistribution decodes the generated weights and checks their
// distribution. With n values, the sample mean has standard error σ/√n and
// the sample standard deviation relative error about √(κ-1)/(2√n), κ ≤ 3;
// the smallest tensor checked has n = 6144, so 3% of σ for the mean and 6%
// for the standard deviation are more than 4 standard errors.
func TestSyntheticDistribution(t *testing.T) {
	for _, typ := range synthTypes {
		t.Run(typ.String(), func(t *testing.T) {
			spec := tinySpec(t, typ)
			spec.Untied = true
			f := writeSynth(t, spec)
			tests := []struct {
				name  string
				sigma float64
			}{
				{"token_embd.weight", 1},
				{"output.weight", 1 / 8.0},
				{"blk.0.attn_q.weight", 1 / 8.0},
				{"blk.1.attn_k.weight", 1 / 8.0},
				{"blk.0.ffn_up.weight", 1 / 8.0},
				{"blk.1.ffn_down.weight", 1 / math.Sqrt(96)},
			}
			for _, tt := range tests {
				x, err := f.ReadTensorFloat32(tt.name)
				if err != nil {
					t.Fatal(err)
				}
				mean, std := meanStd(x)
				if math.Abs(mean) > 0.03*tt.sigma || math.Abs(std/tt.sigma-1) > 0.06 {
					t.Errorf("%s: mean %.4g std %.4g, want 0 and %.4g", tt.name, mean, std, tt.sigma)
				}
				ti, _ := f.Tensor(tt.name)
				row := int(ti.Dims[0])
				if reflect.DeepEqual(x[:row], x[row:2*row]) {
					t.Errorf("%s: rows 0 and 1 are equal", tt.name)
				}
				checkCodes(t, f, ti, tt.sigma)
			}
			norm, err := f.ReadTensorFloat32("blk.1.attn_norm.weight")
			if err != nil {
				t.Fatal(err)
			}
			if mean, std := meanStd(norm); math.Abs(mean-1) > 0.01 || std < 0.01 || std > 0.03 {
				t.Errorf("attn_norm: mean %.4g std %.4g, want near 1 and 0.02", mean, std)
			}
		})
	}
}

func meanStd(x []float32) (mean, std float64) {
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	for _, v := range x {
		std += (float64(v) - mean) * (float64(v) - mean)
	}
	return mean, math.Sqrt(std / float64(len(x)))
}

// checkCodes decodes quantized blocks by hand: codes must avoid the
// asymmetric extreme (-128 for Q8_0, nibble 0 for Q4_0), use every other
// value, and scales must lie within ±30% of the scale that gives the
// standard deviation sigma: ±25% jitter, times the normalization of the
// 256 jitters' mean square (a few percent), times F16 rounding (0.05%).
func checkCodes(t *testing.T, f *File, ti *TensorInfo, sigma float64) {
	t.Helper()
	var codeStd float64
	switch ti.Type {
	case Q8_0:
		codeStd = q8CodeStd
	case Q4_0:
		codeStd = q4CodeStd
	default:
		return
	}
	raw, err := f.ReadTensor(ti.Name)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	ts := ti.Type.TypeSize()
	d0 := sigma / codeStd
	for b := 0; b+ts <= len(raw); b += ts {
		d := float64(Float16ToFloat32(binary.LittleEndian.Uint16(raw[b:])))
		if d < 0.7*d0 || d > 1.3*d0 {
			t.Fatalf("%s block %d: scale %g outside ±30%% of %g", ti.Name, b/ts, d, d0)
		}
		for _, q := range raw[b+2 : b+ts] {
			if ti.Type == Q8_0 {
				seen[int(int8(q))]++
			} else {
				seen[int(q&0xf)-8]++
				seen[int(q>>4)-8]++
			}
		}
	}
	lo, hi := -127, 127
	if ti.Type == Q4_0 {
		lo, hi = -7, 7
	}
	if seen[lo-1] != 0 {
		t.Errorf("%s: code %d used %d times", ti.Name, lo-1, seen[lo-1])
	}
	for c := lo; c <= hi; c++ {
		if seen[c] == 0 {
			t.Errorf("%s: code %d never used", ti.Name, c)
		}
	}
}

func TestSyntheticDeterminism(t *testing.T) {
	for _, typ := range synthTypes {
		t.Run(typ.String(), func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, seed uint64) []byte {
				spec := tinySpec(t, typ)
				spec.Seed = seed
				p := filepath.Join(dir, name)
				if err := WriteSynthetic(p, spec); err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			a, b, c := write("a.gguf", 7), write("b.gguf", 7), write("c.gguf", 8)
			if !bytes.Equal(a, b) {
				t.Error("same seed, different bytes")
			}
			if len(a) != len(c) {
				t.Fatalf("seeds 7 and 8 give sizes %d and %d", len(a), len(c))
			}
			fa, _ := Parse(bytes.NewReader(a), int64(len(a)))
			fc, _ := Parse(bytes.NewReader(c), int64(len(c)))
			for _, ti := range fa.Tensors {
				ta, _ := fa.ReadTensorAt(bytes.NewReader(a), ti.Name)
				tc, _ := fc.ReadTensorAt(bytes.NewReader(c), ti.Name)
				if bytes.Equal(ta, tc) {
					t.Errorf("seeds 7 and 8 give the same %s", ti.Name)
				}
			}
			// Tensors of one file differ from each other too.
			q, _ := fa.ReadTensorAt(bytes.NewReader(a), "blk.0.attn_q.weight")
			o, _ := fa.ReadTensorAt(bytes.NewReader(a), "blk.0.attn_output.weight")
			if bytes.Equal(q, o) {
				t.Error("attn_q and attn_output are equal")
			}
		})
	}
}

func TestWriteSyntheticErrors(t *testing.T) {
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	noTokens := filepath.Join(t.TempDir(), "notokens.gguf")
	var w Writer
	if err := w.AddKV("general.architecture", "llama"); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(noTokens); err != nil {
		t.Fatal(err)
	}
	text := writeTemp(t, "vocab.txt", []byte("not a vocabulary\n"))
	tests := []struct {
		name string
		edit func(s *SynthSpec)
		want string
	}{
		{"bert", func(s *SynthSpec) { s.Arch = "bert" }, `architecture "bert" are not supported (supported: llama, gpt2, gptneox, qwen2, qwen3, phi3, gemma2, gemma3)`},
		{"llama rope dim", func(s *SynthSpec) { s.RopeDim = 4 }, "gptneox settings, not llama"},
		{"no layers", func(s *SynthSpec) { s.NLayer = 0 }, "NLayer is 0"},
		{"negative d_ff", func(s *SynthSpec) { s.DFF = -1 }, "DFF is -1"},
		{"heads", func(s *SynthSpec) { s.NHead = 5 }, "d_model 64 is not a multiple of the 5 heads"},
		{"odd head dim", func(s *SynthSpec) { s.DModel = 96; s.NHead = 32 }, "head dimension 3"},
		{"kv heads", func(s *SynthSpec) { s.NHeadKV = 3 }, "4 heads is not a multiple of the 3 key/value heads"},
		{"Q4_0 d_model", func(s *SynthSpec) { s.Type = Q4_0; s.DModel = 48; s.NHead = 2 }, "d_model 48 and d_ff 96 are not both multiples of 32"},
		{"Q8_0 d_ff", func(s *SynthSpec) { s.Type = Q8_0; s.DFF = 100 }, "d_ff 100 are not both multiples of 32"},
		{"Q6_K", func(s *SynthSpec) { s.Type = Q6_K }, "cannot generate weights of type Q6_K"},
		{"bad eps", func(s *SynthSpec) { s.NormEps = -1 }, "norm epsilon"},
		{"bad rope", func(s *SynthSpec) { s.RopeBase = math.NaN() }, "rope base"},
		{"vocab missing", func(s *SynthSpec) { s.VocabPath = filepath.Join(t.TempDir(), "none.gguf") }, "no such file"},
		{"vocab not gguf", func(s *SynthSpec) { s.VocabPath = text }, "not a GGUF file"},
		{"vocab without tokens", func(s *SynthSpec) { s.VocabPath = noTokens }, "has no tokenizer.ggml.tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tinySpec(t, F32)
			s.VocabPath = vocab
			tt.edit(&s)
			p := filepath.Join(t.TempDir(), "m.gguf")
			err := WriteSynthetic(p, s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteSynthetic = %v, want %q", err, tt.want)
			}
			if _, serr := os.Stat(p); serr == nil {
				t.Error("a file was written")
			}
		})
	}

	// Overwriting needs Overwrite.
	p := filepath.Join(t.TempDir(), "m.gguf")
	s := tinySpec(t, Q4_0)
	if err := WriteSynthetic(p, s); err != nil {
		t.Fatal(err)
	}
	if err := WriteSynthetic(p, s); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second WriteSynthetic = %v, want fs.ErrExist", err)
	}
	s.Overwrite = true
	if err := WriteSynthetic(p, s); err != nil {
		t.Errorf("WriteSynthetic with Overwrite = %v", err)
	}
}

// TestSyntheticShippedVocab: the vocabularies compiled into the binary are
// the files in testdata/models, and WriteSynthetic uses them without looking
// for any file (the working directory is an empty folder).
func TestSyntheticShippedVocab(t *testing.T) {
	for _, arch := range []string{"llama", "gpt2", "gptneox"} {
		disk, err := Open(testmodels.Path(t, SynthVocab(arch)))
		if err != nil {
			t.Fatal(err)
		}
		built, err := ShippedVocab(arch)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := disk.Strings("tokenizer.ggml.tokens")
		b, _ := built.Strings("tokenizer.ggml.tokens")
		if len(a) == 0 || !slices.Equal(a, b) {
			t.Errorf("%s: built-in vocabulary has %d tokens, testdata/models has %d (or they differ)", arch, len(b), len(a))
		}
	}
	if _, err := ShippedVocab("mamba"); err == nil || !strings.Contains(err.Error(), "--vocab") {
		t.Errorf("unknown architecture: %v", err)
	}
	t.Chdir(t.TempDir())
	t.Setenv(testmodels.DirEnv, "")
	f := writeSynth(t, SynthSpec{NLayer: 1, DModel: 32, NHead: 2, DFF: 64})
	in, err := f.Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.NVocab != 32000 || in.NHeadKV != 2 || in.NCtxTrain != 2048 || in.NormEps != 1e-5 || in.RopeBase != 10000 || in.FileType != "F32" {
		t.Errorf("defaults: %+v", in)
	}
	if err := f.CheckRunnable(); err != nil {
		t.Error(err)
	}
}

func TestSynthPreset(t *testing.T) {
	tests := []struct {
		name                          string
		layers, d, heads, kv, ff, ctx int
		typ                           GGMLType
		untied                        bool
		params                        float64 // with the 32000-token Llama 2 vocabulary
	}{
		{"tiny", 2, 64, 4, 2, 128, 512, F32, false, 0},
		{"small", 4, 256, 8, 4, 704, 1024, F16, false, 0},
		{"bench-cpu", 16, 2048, 16, 16, 5632, 2048, Q8_0, false, 0},
		{"llama2-7b", 32, 4096, 32, 32, 11008, 4096, Q4_0, true, 6.738e9},
	}
	if got := SynthPresets(); !reflect.DeepEqual(got, []string{"bench-cpu", "gemma2-2b-shape", "gemma2-tiny", "gemma3-1b-shape", "gemma3-4b-shape", "gemma3-tiny", "gpt2-small", "llama2-7b", "mistral-7b-shape", "mistral-tiny", "phi3-mini-shape", "phi3-tiny", "pythia-160m", "pythia-70m", "qwen2-0.5b", "qwen2-tiny", "qwen3-0.6b-shape", "qwen3-tiny", "small", "tiny"}) {
		t.Errorf("SynthPresets() = %v", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := SynthPreset(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Arch != "llama" || s.NLayer != tt.layers || s.DModel != tt.d || s.NHead != tt.heads || s.NHeadKV != tt.kv ||
				s.DFF != tt.ff || s.NCtx != tt.ctx || s.Type != tt.typ || s.Untied != tt.untied || s.Name != "synthetic-"+tt.name {
				t.Errorf("SynthPreset(%q) = %+v", tt.name, s)
			}
			for _, typ := range synthTypes {
				s.Type = typ
				if _, err := s.normalize(); err != nil {
					t.Errorf("%s: %v", typ, err)
				}
			}
			if tt.params != 0 {
				dh := s.DModel / s.NHead
				per := s.DModel*s.NHead*dh*2 + s.DModel*s.NHeadKV*dh*2 + 3*s.DModel*s.DFF + 2*s.DModel
				n := float64(s.NLayer*per + 2*32000*s.DModel + s.DModel)
				if math.Abs(n/tt.params-1) > 0.001 {
					t.Errorf("%g weights, want %g", n, tt.params)
				}
			}
		})
	}
	if _, err := SynthPreset("huge"); err == nil || !strings.Contains(err.Error(), "bench-cpu, gemma2-2b-shape, gemma2-tiny, gemma3-1b-shape, gemma3-4b-shape, gemma3-tiny, gpt2-small, llama2-7b, mistral-7b-shape, mistral-tiny, phi3-mini-shape, phi3-tiny, pythia-160m, pythia-70m, qwen2-0.5b, qwen2-tiny, qwen3-0.6b-shape, qwen3-tiny, small, tiny") {
		t.Errorf("SynthPreset(huge) = %v", err)
	}
}

func TestRNG(t *testing.T) {
	// xoshiro256** is deterministic and its normal() has mean 0 and
	// variance 1 (within 4 standard errors for 1e5 draws).
	r1, r2 := newRNG(1), newRNG(1)
	for i := 0; i < 100; i++ {
		if r1.next() != r2.next() {
			t.Fatal("same seed, different streams")
		}
	}
	r3, r4 := newRNG(2), newRNG(1)
	if r3.next() == r4.next() {
		t.Error("seeds 1 and 2 start alike")
	}
	x := make([]float32, 100000)
	for i := range x {
		x[i] = r1.normal()
	}
	mean, std := meanStd(x)
	if math.Abs(mean) > 4/math.Sqrt(1e5) || math.Abs(std-1) > 0.01 {
		t.Errorf("normal(): mean %g std %g", mean, std)
	}
	if tensorSeed(1, "a") == tensorSeed(1, "b") || tensorSeed(1, "a") == tensorSeed(2, "a") {
		t.Error("tensorSeed collides")
	}
}

// BenchmarkWriteSynthetic writes mid-size models (8 layers, d_model 1024,
// d_ff 2816, tied, 32000-token vocabulary) and reports the write rate.
func BenchmarkWriteSynthetic(b *testing.B) {
	for _, typ := range synthTypes {
		b.Run(typ.String(), func(b *testing.B) {
			spec := SynthSpec{NLayer: 8, DModel: 1024, NHead: 16, DFF: 2816, Type: typ,
				VocabPath: testmodels.Path(b, testmodels.VocabLlamaSPM), Overwrite: true}
			p := filepath.Join(b.TempDir(), "bench.gguf")
			for b.Loop() {
				if err := WriteSynthetic(p, spec); err != nil {
					b.Fatal(err)
				}
			}
			if fi, err := os.Stat(p); err == nil {
				b.SetBytes(fi.Size())
			}
		})
	}
}

// TestSynthVocabSize checks the padding of SynthSpec.VocabSize: the
// tokenizer's tokens, scores and types grow to the size with unused tokens,
// the original entries and the rows of the original tokens are unchanged
// (each tensor's values are drawn in order from its own seed), and a size
// below the vocabulary's is refused with the size it needs. GPT-2's
// vocabulary, which has no scores, pads too.
func TestSynthVocabSize(t *testing.T) {
	plain := writeSynth(t, tinySpec(t, F32))
	toks, _ := plain.Strings("tokenizer.ggml.tokens")
	n := len(toks)
	spec := tinySpec(t, F32)
	spec.VocabSize = n + 100
	f := writeSynth(t, spec)
	got, _ := f.Strings("tokenizer.ggml.tokens")
	if len(got) != n+100 || !slices.Equal(got[:n], toks) || got[n] != "<unused_0>" || got[n+99] != "<unused_99>" {
		t.Fatalf("padded tokens: %d entries, [%d]=%q, last %q", len(got), n, got[n], got[len(got)-1])
	}
	scores, _ := f.Get("tokenizer.ggml.scores")
	if s, ok := scores.([]float32); !ok || len(s) != n+100 || s[n] != 0 {
		t.Errorf("padded scores: %T of %d", scores, len(s))
	}
	types, _ := f.Get("tokenizer.ggml.token_type")
	ty, ok := types.([]int32)
	if !ok || len(ty) != n+100 || ty[n] != tokenTypeUnused || ty[n+99] != tokenTypeUnused {
		t.Errorf("padded token types: %T of %d", types, len(ty))
	}
	if v, _ := f.Int("llama.vocab_size"); v != int64(n+100) {
		t.Errorf("llama.vocab_size %d, want %d", v, n+100)
	}
	ti, ok := f.Tensor("token_embd.weight")
	if !ok || ti.Dims[1] != uint64(n+100) {
		t.Fatalf("token_embd.weight: %+v", ti)
	}
	a, err := plain.ReadTensorFloat32("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.ReadTensorFloat32("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b[:len(a)]) {
		t.Error("padding changed the embedding rows of the vocabulary's own tokens")
	}

	spec.VocabSize = n - 1
	err = WriteSynthetic(filepath.Join(t.TempDir(), "small.gguf"), spec)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(n)) || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("vocabulary size below the vocabulary's: %v", err)
	}

	gspec := SynthSpec{Arch: "gpt2", NLayer: 1, DModel: 64, NHead: 4, DFF: 128, NCtx: 64, Type: F32, Seed: 3,
		VocabPath: testmodels.Path(t, testmodels.VocabGPT2), VocabSize: 60000}
	g := writeSynth(t, gspec)
	if got, _ := g.Strings("tokenizer.ggml.tokens"); len(got) != 60000 {
		t.Errorf("gpt2 padded to %d tokens, want 60000", len(got))
	}
	if _, ok := g.Get("tokenizer.ggml.scores"); ok {
		t.Error("padding added scores to a vocabulary that has none")
	}
}

// TestSynthPresetAlias checks that qwen2-0.5b-shape, the spelling of the
// other -shape presets, is qwen2-0.5b.
func TestSynthPresetAlias(t *testing.T) {
	a, err := SynthPreset("qwen2-0.5b-shape")
	if err != nil {
		t.Fatal(err)
	}
	b, err := SynthPreset("qwen2-0.5b")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("qwen2-0.5b-shape %+v, qwen2-0.5b %+v", a, b)
	}
}
