package models

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// openShared opens a shared model file.
func openShared(t *testing.T, name string) *File {
	t.Helper()
	f, err := Open(sharedModel(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// edited returns a copy of f whose metadata edit changed; the tensors are
// f's (the checks read only the tensor table).
func edited(f *File, edit func(kvs []KV) []KV) *File {
	g := *f
	g.KVs = edit(slices.Clone(f.KVs))
	return &g
}

// withTokens sets token i of the tokenizer.ggml.tokens of kvs to s.
func withToken(kvs []KV, i int, s string) []KV {
	for k := range kvs {
		if kvs[k].Key == "tokenizer.ggml.tokens" {
			toks := slices.Clone(kvs[k].Value.([]string))
			toks[i] = s
			kvs[k].Value = toks
		}
	}
	return kvs
}

// flipBit flips bit b of byte i of s.
func flipBit(s string, i, b int) string {
	p := []byte(s)
	p[i] ^= 1 << b
	return string(p)
}

func f32s(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func i32s(n int, v int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

var nan32 = float32(math.NaN())

// TestCheckVocabBad checks each kind of tokenizer metadata llama.cpp's
// vocabulary loader trusts, on the real stories260K (SentencePiece with
// byte tokens) through CheckRunnable and on the real GPT-2 vocabulary
// through CheckVocab: every one aborts llama.cpp, or makes it read past an
// array, or throw, when the check lets it through. The error must name the
// key.
func TestCheckVocabBad(t *testing.T) {
	spm := openShared(t, testmodels.Stories260K)
	bpe := openShared(t, testmodels.VocabGPT2)
	const n = 512 // stories260K's vocabulary
	// "<0x41>" is token 3+0x41; one flipped bit in its "1" makes it
	// "<0x43>", the text of token 3+0x43
	dup := flipBit("<0x41>", 4, 1)
	tests := []struct {
		name string
		base *File
		edit func(kvs []KV) []KV
		want []string
	}{
		{"flipped bit duplicates a byte token", spm, func(kvs []KV) []KV { return withToken(kvs, 3+0x41, dup) },
			[]string{`tokenizer.ggml.tokens holds "<0x43>" twice (ids 68 and 70)`, "unique", "flipped bit"}},
		{"duplicate BPE token", bpe, func(kvs []KV) []KV { return withToken(kvs, 1000, "Ġthe") },
			[]string{`tokenizer.ggml.tokens holds "Ġthe" twice`}},
		{"empty token named like another", spm, func(kvs []KV) []KV { return withToken(withToken(kvs, 300, ""), 301, "[EMPTY_300]") },
			[]string{"tokenizer.ggml.tokens[300] and [301]", `"[EMPTY_300]"`}},
		{"empty tokens", spm, func(kvs []KV) []KV {
			kvs = setKV(kvs, "tokenizer.ggml.tokens", []string{})
			return deleteKV(deleteKV(kvs, "tokenizer.ggml.scores"), "tokenizer.ggml.token_type")
		}, []string{"tokenizer.ggml.tokens is empty"}},
		{"no tokens", bpe, func(kvs []KV) []KV { return deleteKV(kvs, "tokenizer.ggml.tokens") },
			[]string{"no tokenizer.ggml.tokens"}},
		{"tokens of another type", bpe, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.tokens", []int32{1, 2}) },
			[]string{"tokenizer.ggml.tokens has type array of int32", "array of string"}},

		{"short scores", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", f32s(100, 0)) },
			[]string{"tokenizer.ggml.scores has 100 values for 512 tokens", "past the end"}},
		{"long scores", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", f32s(n+1, 0)) },
			[]string{"tokenizer.ggml.scores has 513 values for 512 tokens"}},
		{"int32 scores", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", i32s(n, 0)) },
			[]string{"tokenizer.ggml.scores has type array of int32", "requires array of float32"}},
		{"string scores", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]string, n)) },
			[]string{"tokenizer.ggml.scores has type array of string"}},
		{"scalar scores", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", float32(0)) },
			[]string{"tokenizer.ggml.scores has type float32", "requires array of float32"}},
		{"NaN score", spm, func(kvs []KV) []KV {
			s := f32s(n, 0)
			s[77] = nan32
			return setKV(kvs, "tokenizer.ggml.scores", s)
		}, []string{"tokenizer.ggml.scores[77] is NaN"}},
		{"short token_type", bpe, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", i32s(50000, 1)) },
			[]string{"tokenizer.ggml.token_type has 50000 values for 50257 tokens", "past the end"}},
		{"uint8 token_type", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", make([]uint8, n)) },
			[]string{"tokenizer.ggml.token_type has type array of uint8", "requires array of int32"}},
		{"token_type out of range", spm, func(kvs []KV) []KV {
			ty := i32s(n, 1)
			ty[9] = 9
			return setKV(kvs, "tokenizer.ggml.token_type", ty)
		}, []string{"tokenizer.ggml.token_type[9] is 9", "0 to 6"}},
		{"negative token_type", spm, func(kvs []KV) []KV {
			ty := i32s(n, 1)
			ty[9] = -1
			return setKV(kvs, "tokenizer.ggml.token_type", ty)
		}, []string{"tokenizer.ggml.token_type[9] is -1"}},
		{"byte token without a byte", spm, func(kvs []KV) []KV { return withToken(kvs, 3, "<0x") },
			[]string{`tokenizer.ggml.tokens[3] is "<0x", a byte token (token_type 6)`, "<0xXX>"}},

		{"bert tokenizer in a llama file", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", "bert") },
			[]string{`tokenizer.ggml.model is "bert" (WordPiece`, "llama model", `"llama" (SentencePiece) or "gpt2" (byte-level BPE)`}},
		{"t5 tokenizer", bpe, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", "t5") },
			[]string{`tokenizer.ggml.model is "t5"`, "gpt2 model"}},
		{"no tokenizer", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", "none") },
			[]string{`tokenizer.ggml.model is "none" (no tokenizer)`}},
		{"unknown tokenizer", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", "llamq") },
			[]string{`tokenizer.ggml.model is "llamq" (a tokenizer llama.cpp does not know)`}},
		{"tokenizer of another type", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", uint32(1)) },
			[]string{"tokenizer.ggml.model has type uint32", "requires string"}},
		{"BPE without merges", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", "gpt2") },
			[]string{"missing metadata key tokenizer.ggml.merges"}},
		{"merges of another type", bpe, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.merges", []uint32{1}) },
			[]string{"tokenizer.ggml.merges has type array of uint32", "requires array of string"}},
		{"BPE token not UTF-8", bpe, func(kvs []KV) []KV { return withToken(kvs, 1000, "\xf5\x80\x80\x80") },
			[]string{"tokenizer.ggml.tokens[1000]", "not valid UTF-8"}},

		{"bos out of range", bpe, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.bos_token_id", uint32(50257)) },
			[]string{"tokenizer.ggml.bos_token_id is 50257, outside the vocabulary of 50257 tokens"}},
		{"int32 eos", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.eos_token_id", int32(2)) },
			[]string{"tokenizer.ggml.eos_token_id has type int32", "requires uint32"}},
		{"default eos past a small vocabulary", bpe, func(kvs []KV) []KV {
			toks, _ := bpe.Strings("tokenizer.ggml.tokens")
			kvs = setKV(kvs, "tokenizer.ggml.tokens", toks[:10])
			kvs = setKV(kvs, "tokenizer.ggml.token_type", i32s(10, 1))
			return deleteKV(deleteKV(kvs, "tokenizer.ggml.bos_token_id"), "tokenizer.ggml.eos_token_id")
		}, []string{"tokenizer.ggml.bos_token_id is missing", "default for the gpt2 tokenizer, 11", "outside the vocabulary of 10 tokens"}},
		{"string add_bos_token", spm, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.add_bos_token", "yes") },
			[]string{"tokenizer.ggml.add_bos_token has type string", "requires bool"}},
		{"Phi-3 name without its tokens", spm, func(kvs []KV) []KV { return setKV(kvs, "general.name", "Phi-3 mini") },
			[]string{`general.name "phi-3 mini"`, `no token "<|endoftext|>"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := edited(tt.base, tt.edit)
			check, name := f.CheckRunnable, "CheckRunnable"
			if len(f.Tensors) == 0 {
				check, name = f.CheckVocab, "CheckVocab"
			}
			err := check()
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("%s() = %v, want a *FormatError", name, err)
			}
			if !containsAll(err.Error(), append(tt.want, f.Path)...) || fe.Fix == "" {
				t.Errorf("%s() = %v\nwant it to contain %q and a fix", name, err, tt.want)
			}
			if len(f.Tensors) > 0 {
				// the vocabulary part of CheckRunnable is CheckVocab
				if err2 := f.CheckVocab(); err2 == nil || !containsAll(err2.Error(), tt.want...) {
					t.Errorf("CheckVocab() = %v, want it to contain %q", err2, tt.want)
				}
			}
		})
	}
}

// TestCheckVocabShared checks that every shared file's vocabulary passes,
// vocab-only files included.
func TestCheckVocabShared(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.TinyStories656KF16, testmodels.TinyStories656KQ8, testmodels.VocabLlamaSPM, testmodels.VocabGPT2, testmodels.VocabGPTNeoX} {
		if err := openShared(t, name).CheckVocab(); err != nil {
			t.Errorf("%s: CheckVocab() = %v", name, err)
		}
	}
	// a vocab-only file of an architecture lldiff does not run still
	// tokenizes
	f := edited(openShared(t, testmodels.VocabGPT2), func(kvs []KV) []KV { return setKV(kvs, "general.architecture", "qwen2") })
	if err := f.CheckVocab(); err != nil {
		t.Errorf("qwen2 vocab-only: CheckVocab() = %v", err)
	}
	f.KVs = deleteKV(f.KVs, "general.architecture")
	if err := f.CheckVocab(); err == nil || !strings.Contains(err.Error(), "no general.architecture") {
		t.Errorf("no architecture: CheckVocab() = %v", err)
	}
}

// TestCheckHParamsBad checks the hyperparameter values llama.cpp asserts
// on or computes NaN from, on stories260K and on synthetic gpt2 and gptneox
// models.
func TestCheckHParamsBad(t *testing.T) {
	llama := openShared(t, testmodels.Stories260K)
	gpt2 := writeSynth(t, smallArchSpec(t, "gpt2", F32))
	neox := writeSynth(t, smallArchSpec(t, "gptneox", F32))
	const eps = "llama.attention.layer_norm_rms_epsilon"
	tests := []struct {
		name string
		base *File
		edit func(kvs []KV) []KV
		want []string
	}{
		{"NaN epsilon", llama, func(kvs []KV) []KV { return setKV(kvs, eps, nan32) },
			[]string{eps + " is NaN", "small positive number", "ggml aborts"}},
		{"negative epsilon", llama, func(kvs []KV) []KV { return setKV(kvs, eps, float32(-1e-5)) },
			[]string{eps + " is -1e-05"}},
		{"zero epsilon", llama, func(kvs []KV) []KV { return setKV(kvs, eps, float32(0)) },
			[]string{eps + " is 0"}},
		{"infinite epsilon", llama, func(kvs []KV) []KV { return setKV(kvs, eps, float32(math.Inf(1))) },
			[]string{eps + " is +Inf"}},
		{"negative LayerNorm epsilon", gpt2, func(kvs []KV) []KV { return setKV(kvs, "gpt2.attention.layer_norm_epsilon", float32(-1)) },
			[]string{"gpt2.attention.layer_norm_epsilon is -1"}},
		{"NaN LayerNorm epsilon", neox, func(kvs []KV) []KV { return setKV(kvs, "gptneox.attention.layer_norm_epsilon", nan32) },
			[]string{"gptneox.attention.layer_norm_epsilon is NaN"}},
		{"NaN rope base", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.freq_base", nan32) },
			[]string{"llama.rope.freq_base is NaN", "NaN"}},
		{"zero rope base", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.freq_base", float32(0)) },
			[]string{"llama.rope.freq_base is 0", "positive base"}},
		{"negative rope base", neox, func(kvs []KV) []KV { return setKV(kvs, "gptneox.rope.freq_base", float32(-10000)) },
			[]string{"gptneox.rope.freq_base is -10000"}},
		{"float64 rope base", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.freq_base", 10000.0) },
			[]string{"llama.rope.freq_base has type float64", "requires float32"}},
		{"negative rope scaling", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.factor", float32(-2)) },
			[]string{"llama.rope.scaling.factor is -2", "0 (no scaling) or a positive factor"}},
		{"tiny rope scaling", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scale_linear", float32(1e-40)) },
			[]string{"llama.rope.scale_linear is 1e-40"}},
		{"NaN rope attention factor", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.attn_factor", nan32) },
			[]string{"llama.rope.scaling.attn_factor is NaN"}},
		{"unknown rope scaling", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.type", "lineer") },
			[]string{`llama.rope.scaling.type is "lineer"`, "none, linear, yarn, longrope", "aborts"}},
		{"unknown rope scaling in gpt2", gpt2, func(kvs []KV) []KV { return setKV(kvs, "gpt2.rope.scaling.type", "x") },
			[]string{`gpt2.rope.scaling.type is "x"`}},
		{"YaRN with base 1", llama, func(kvs []KV) []KV {
			return setKV(setKV(kvs, "llama.rope.scaling.type", "yarn"), "llama.rope.freq_base", float32(1))
		}, []string{"llama.rope.freq_base is 1 with YaRN"}},
		{"experts", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.expert_count", uint32(8)) },
			[]string{"llama.expert_count is 8", "mixture-of-experts"}},
		{"experts used without experts", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.expert_used_count", uint32(2)) },
			[]string{"llama.expert_used_count is 2"}},
		{"int32 expert count", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.expert_count", int32(0)) },
			[]string{"llama.expert_count has type int32"}},
		{"too many layers", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.block_count", uint32(600)) },
			[]string{"block_count 600 is more than llama.cpp's limit of 512 layers"}},
		{"short per-layer array", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.feed_forward_length", []uint32{172, 172, 172}) },
			[]string{"llama.feed_forward_length has 3 per-layer values for block_count 5"}},
		{"long per-layer array", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.attention.head_count", []uint32{8, 8, 8, 8, 8, 8}) },
			[]string{"llama.attention.head_count has 6 per-layer values for block_count 5"}},
		{"float per-layer array", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.feed_forward_length", f32s(5, 172)) },
			[]string{"llama.feed_forward_length has type array of float32", "requires uint32"}},
		{"key heads wider than value heads", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.attention.key_length", uint32(16)) },
			[]string{"value heads are 8 wide", "llama.attention.value_length is missing", "key heads 16"}},
		{"value_length", neox, func(kvs []KV) []KV { return setKV(kvs, "gptneox.attention.value_length", uint32(8)) },
			[]string{"value heads are 8 wide (gptneox.attention.value_length) but the key heads 16"}},
		{"partial rope in llama", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.rope.dimension_count", uint32(4)) },
			[]string{"llama.rope.dimension_count 4 differs from the head dimension 8"}},
		{"zero context", llama, func(kvs []KV) []KV { return setKV(kvs, "llama.context_length", uint32(0)) },
			[]string{"context_length 0 must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.base.CheckRunnable(); err != nil {
				t.Fatalf("the unedited model: %v", err)
			}
			f := edited(tt.base, tt.edit)
			err := f.CheckRunnable()
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("CheckRunnable() = %v, want a *FormatError", err)
			}
			if !containsAll(err.Error(), append(tt.want, f.Path)...) || fe.Fix == "" {
				t.Errorf("CheckRunnable() = %v\nwant it to contain %q and a fix", err, tt.want)
			}
		})
	}
}

// TestCheckHParamsGood checks values llama.cpp computes with that the
// checks must let through.
func TestCheckHParamsGood(t *testing.T) {
	llama := openShared(t, testmodels.Stories260K)
	for _, edit := range []func(kvs []KV) []KV{
		func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.factor", float32(0)) },
		func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.factor", float32(4)) },
		func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.type", "none") },
		func(kvs []KV) []KV { return setKV(kvs, "llama.expert_count", uint32(0)) },
		func(kvs []KV) []KV { return setKV(kvs, "llama.attention.key_length", uint32(8)) },
		func(kvs []KV) []KV { return setKV(kvs, "llama.attention.value_length", uint32(8)) },
		func(kvs []KV) []KV { return setKV(kvs, "llama.feed_forward_length", []uint32{172, 172, 172, 172, 172}) },
		func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.padding_token_id", uint32(1<<32-1)) },
		func(kvs []KV) []KV { return withToken(kvs, 300, "") },
		func(kvs []KV) []KV { return setKV(kvs, "general.name", "phi-2") },
	} {
		f := edited(llama, edit)
		if err := f.CheckRunnable(); err != nil {
			t.Errorf("CheckRunnable() = %v", err)
		}
	}
}

// TestSPMGaps checks the characters llama.cpp's SentencePiece tokenizer
// cannot spell: TinyStories-656K has byte tokens for 77 bytes only, and
// llama.cpp aborts on "é" (whose bytes C3 A9 are not among them).
func TestSPMGaps(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.VocabLlamaSPM, testmodels.VocabGPT2} {
		if g := openShared(t, name).SPMGaps(); g != nil {
			t.Errorf("%s: SPMGaps() = %v, want nil: it can spell every byte or is not SentencePiece", name, g)
		}
	}
	g := openShared(t, testmodels.TinyStories656KQ8).SPMGaps()
	if g == nil {
		t.Fatal("TinyStories-656K: SPMGaps() = nil")
	}
	for _, tc := range []struct {
		text, bad string
	}{
		{"Once upon a time, there was a little girl.", ""},
		{"", ""},
		{"café", "é"},
		{"a 日本", "日"},
		{"\xc3", "\xc3"},
	} {
		bad, ok := g.Unspellable(tc.text)
		if bad != tc.bad || ok != (tc.bad != "") {
			t.Errorf("Unspellable(%q) = %q, %v; want %q", tc.text, bad, ok, tc.bad)
		}
	}
	var none *SPMGaps
	if _, ok := none.Unspellable("日本"); ok {
		t.Error("a nil *SPMGaps cannot spell 日本")
	}
}

// TestCheckRunnableUnusedTensors checks that a tensor llama.cpp would not
// load is refused (llama.cpp refuses the whole file), and that the
// optional tensors it loads are checked.
func TestCheckRunnableUnusedTensors(t *testing.T) {
	llama := openShared(t, testmodels.Stories260K)
	withTensor := func(f *File, name string, dims ...uint64) *File {
		g := *f
		g.Tensors = append(slices.Clone(f.Tensors), TensorInfo{Name: name, Type: F32, Dims: dims, Size: 4 * dims[0]})
		fixLayout(&g)
		return &g
	}
	for _, tc := range []struct {
		name string
		f    *File
		want string // "" when the file is runnable
	}{
		{"fewer layers than the file has", edited(llama, func(kvs []KV) []KV { return setKV(kvs, "llama.block_count", uint32(4)) }),
			"tensor blk.4.attn_norm.weight is not part of a 4-layer llama model"},
		{"a tensor of another architecture", withTensor(llama, "blk.0.attn_qkv.bias", 192),
			"tensor blk.0.attn_qkv.bias is not part of a 5-layer llama model"},
		{"a bias of the wrong shape", withTensor(llama, "blk.1.attn_k.bias", 64),
			"tensor blk.1.attn_k.bias has shape [64], want [32]"},
		{"a bias", withTensor(llama, "blk.1.attn_k.bias", 32), ""},
		{"RoPE frequency factors", withTensor(llama, "rope_freqs.weight", 4), ""},
		{"RoPE frequency factors of the wrong shape", withTensor(llama, "rope_freqs.weight", 8),
			"tensor rope_freqs.weight has shape [8], want [4]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.CheckRunnable()
			if tc.want == "" {
				if err != nil {
					t.Errorf("CheckRunnable() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckRunnable() = %v, want %q", err, tc.want)
			}
		})
	}
}
