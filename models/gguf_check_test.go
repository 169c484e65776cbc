package models

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// tinyModel writes the "tiny" synthetic preset with matrices of type typ and
// opens it.
func tinyModel(t *testing.T, typ GGMLType) *File {
	t.Helper()
	s, err := SynthPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	s.Type = typ
	s.VocabPath = testmodels.Path(t, testmodels.VocabLlamaSPM)
	return writeSynth(t, s)
}

// rewrite writes f again with its metadata changed by edit, keeping the
// tensors, and opens the result.
func rewrite(t *testing.T, f *File, edit func(kvs []KV) []KV) *File {
	t.Helper()
	var w Writer
	for _, kv := range edit(slices.Clone(f.KVs)) {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		data, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, data); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "rewritten.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	g, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func setKV(kvs []KV, key string, v any) []KV {
	for i := range kvs {
		if kvs[i].Key == key {
			kvs[i].Value = v
			return kvs
		}
	}
	return append(kvs, KV{key, v})
}

func deleteKV(kvs []KV, key string) []KV {
	return slices.DeleteFunc(kvs, func(kv KV) bool { return kv.Key == key })
}

func TestCheckRunnableShared(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.TinyStories656KF16, testmodels.TinyStories656KQ8} {
		t.Run(name, func(t *testing.T) {
			f, err := Open(testmodels.Path(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.CheckRunnable(); err != nil {
				t.Errorf("CheckRunnable() = %v", err)
			}
		})
	}
	for _, name := range []string{testmodels.VocabLlamaSPM, testmodels.VocabGPT2, testmodels.VocabGPTNeoX} {
		t.Run(name, func(t *testing.T) {
			f, err := Open(testmodels.Path(t, name))
			if err != nil {
				t.Fatalf("a vocab-only file must parse: %v", err)
			}
			err = f.CheckRunnable()
			if err == nil {
				t.Fatal("CheckRunnable() = nil for a vocab-only file")
			}
			if !containsAll(err.Error(), "no tensors", "vocab-only", "no weights") &&
				!containsAll(err.Error(), "no tensors", "vocab-only", "without weights") {
				t.Errorf("CheckRunnable() = %v, want it to say the file has no weights", err)
			}
		})
	}
}

func TestCheckRunnableBert(t *testing.T) {
	f := rewrite(t, tinyModel(t, F32), func(kvs []KV) []KV {
		return setKV(kvs, "general.architecture", "bert")
	})
	err := f.CheckRunnable()
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Path != f.Path {
		t.Fatalf("CheckRunnable() = %v, want a *FormatError for %s", err, f.Path)
	}
	if !containsAll(err.Error(), `architecture "bert" is not supported`, "BERT", "llama, gpt2, gptneox, qwen2, qwen3, phi3, gemma2, gemma3") {
		t.Errorf("CheckRunnable() = %v", err)
	}
	old := SupportedArchitectures
	defer func() { SupportedArchitectures = old }()
	SupportedArchitectures = []string{"llama", "gpt2", "gptneox"}
	f.KVs = setKV(f.KVs, "general.architecture", "clip")
	if err := f.CheckRunnable(); err == nil || !containsAll(err.Error(), "CLIP", "llama, gpt2, gptneox") {
		t.Errorf("CheckRunnable() = %v, want the supported list", err)
	}
}

func TestCheckRunnableBad(t *testing.T) {
	base := tinyModel(t, Q8_0)
	if err := base.CheckRunnable(); err != nil {
		t.Fatalf("synthetic tiny model: %v", err)
	}
	tests := []struct {
		name string
		edit func(f *File)
		want []string
	}{
		{"no architecture", func(f *File) { f.KVs = deleteKV(f.KVs, "general.architecture") }, []string{"no general.architecture"}},
		{"missing block_count", func(f *File) { f.KVs = deleteKV(f.KVs, "llama.block_count") }, []string{"missing metadata key llama.block_count"}},
		{"int32 embedding_length", func(f *File) { f.KVs = setKV(f.KVs, "llama.embedding_length", int32(64)) },
			[]string{"llama.embedding_length has type int32, llama.cpp requires uint32"}},
		{"float64 epsilon", func(f *File) { f.KVs = setKV(f.KVs, "llama.attention.layer_norm_rms_epsilon", 1e-5) },
			[]string{"layer_norm_rms_epsilon has type float64"}},
		{"array block_count", func(f *File) { f.KVs = setKV(f.KVs, "llama.block_count", []uint32{2}) },
			[]string{"block_count has type array of uint32"}},
		{"missing tokenizer", func(f *File) { f.KVs = deleteKV(f.KVs, "tokenizer.ggml.model") }, []string{"missing metadata key tokenizer.ggml.model"}},
		{"no tokens", func(f *File) { f.KVs = deleteKV(f.KVs, "tokenizer.ggml.tokens") }, []string{"no vocabulary"}},
		{"bos out of range", func(f *File) { f.KVs = setKV(f.KVs, "tokenizer.ggml.bos_token_id", uint32(32000)) },
			[]string{"bos_token_id is 32000, outside the vocabulary of 32000 tokens"}},
		{"heads not divisible", func(f *File) { f.KVs = setKV(f.KVs, "llama.attention.head_count_kv", uint32(3)) },
			[]string{"4 heads and 3 key/value heads"}},
		{"odd rope dims", func(f *File) { f.KVs = setKV(f.KVs, "llama.rope.dimension_count", uint32(7)) },
			[]string{"rope.dimension_count 7 must be even"}},
		{"missing tensor", func(f *File) {
			f.Tensors = slices.DeleteFunc(f.Tensors, func(t TensorInfo) bool { return t.Name == "blk.1.ffn_up.weight" })
			fixLayout(f)
		}, []string{"missing tensor blk.1.ffn_up.weight"}},
		{"wrong shape", func(f *File) {
			f.KVs = setKV(f.KVs, "llama.feed_forward_length", uint32(96))
		}, []string{"tensor blk.0.ffn_gate.weight has shape [64 128], want [64 96]", "blk.1.ffn_down.weight has shape [128 64], want [96 64]"}},
		{"wrong vocab", func(f *File) {
			toks, _ := f.Strings("tokenizer.ggml.tokens")
			f.KVs = setKV(f.KVs, "tokenizer.ggml.tokens", toks[:1000])
			scores, _ := f.Get("tokenizer.ggml.scores")
			f.KVs = setKV(f.KVs, "tokenizer.ggml.scores", scores.([]float32)[:1000])
			types, _ := f.Get("tokenizer.ggml.token_type")
			f.KVs = setKV(f.KVs, "tokenizer.ggml.token_type", types.([]int32)[:1000])
		}, []string{"tensor token_embd.weight has shape [64 32000], want [64 1000]"}},
		{"many problems", func(f *File) { f.Tensors = f.Tensors[:2]; fixLayout(f) },
			[]string{"cannot run this model", "missing tensor blk.0.attn_norm.weight", "and 12 more problems"}},
		{"unpacked layout", func(f *File) { f.Tensors[1].Offset += 32 * 1024 * 1024 }, []string{"requires the tensors packed in table order"}},
		{"no tensors", func(f *File) { f.Tensors = nil }, []string{"no tensors", "vocab-only"}},
		{"absurd block_count", func(f *File) { f.KVs = setKV(f.KVs, "llama.block_count", uint32(1<<31-1)) },
			[]string{"block_count 2147483647 is more than llama.cpp's limit of 512 layers"}},
		{"absurd block_count under the limit", func(f *File) { f.KVs = setKV(f.KVs, "llama.block_count", uint32(300)) },
			[]string{"block_count 300 is absurd for a file of 20 tensors"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := *base
			f.KVs = slices.Clone(base.KVs)
			f.Tensors = slices.Clone(base.Tensors)
			tt.edit(&f)
			err := f.CheckRunnable()
			if err == nil {
				t.Fatal("CheckRunnable() = nil")
			}
			if !containsAll(err.Error(), append(tt.want, f.Path)...) {
				t.Errorf("CheckRunnable() = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// fixLayout repacks the tensor offsets after a test removed one.
func fixLayout(f *File) {
	var off uint64
	for i := range f.Tensors {
		f.Tensors[i].Offset = off
		off += alignUp(f.Tensors[i].Size, f.Alignment)
	}
}

func TestCheckRunnableUntiedAndPerLayer(t *testing.T) {
	f := tinyModel(t, F16)
	f.KVs = setKV(f.KVs, "llama.attention.head_count", []uint32{4, 4})
	f.KVs = setKV(f.KVs, "llama.feed_forward_length", []uint32{128, 128})
	if err := f.CheckRunnable(); err != nil {
		t.Errorf("per-layer arrays: %v", err)
	}
	f.KVs = setKV(f.KVs, "llama.feed_forward_length", []uint32{128, 64})
	if err := f.CheckRunnable(); err == nil || !strings.Contains(err.Error(), "blk.1.ffn_gate.weight has shape [64 128], want [64 64]") {
		t.Errorf("per-layer mismatch: %v", err)
	}
}
