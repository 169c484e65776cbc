package models

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated files under testdata")

// FuzzParse checks that Parse never panics, allocates memory in proportion
// to its input, rejects bad input with a *FormatError, and returns only
// Files that are consistent and encode back to the bytes they came from.
// Seeds are in testdata/fuzz/FuzzParse (see TestFuzzCorpus).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		defer func() {
			// Strings cost their bytes plus a 16-byte header per 8-byte
			// length prefix, typed arrays at most 8 bytes per input byte,
			// and growing slices by appending can double that; the window
			// is 64 KiB. Reading every tensor costs at most the file size.
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*uint64(len(data))+1<<20 {
				t.Errorf("%d bytes of input allocated %d bytes", len(data), alloc)
			}
		}()
		file, err := Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Problem == "" {
				t.Fatalf("error %T %v is not a *FormatError with a Problem", err, err)
			}
			return
		}
		if err := consistent(file, data); err != nil {
			t.Fatal(err)
		}
		// Neither may panic on anything Parse accepts.
		file.Info()
		file.CheckRunnable()
	})
}

// consistent checks the invariants of a File parsed from data.
func consistent(f *File, data []byte) error {
	if f.Version != 2 && f.Version != 3 {
		return fmt.Errorf("version %d", f.Version)
	}
	if f.FileSize != int64(len(data)) {
		return fmt.Errorf("FileSize %d for %d bytes", f.FileSize, len(data))
	}
	if a := f.Alignment; a == 0 || a&(a-1) != 0 {
		return fmt.Errorf("alignment %d", a)
	}
	if v, ok := f.Get("general.alignment"); ok && uint64(v.(uint32)) != f.Alignment {
		return fmt.Errorf("alignment %d, general.alignment %v", f.Alignment, v)
	}
	keys := map[string]bool{}
	for _, kv := range f.KVs {
		if kv.Key == "" || keys[kv.Key] {
			return fmt.Errorf("empty or duplicate key %q", kv.Key)
		}
		keys[kv.Key] = true
		if _, ok := ggufTypeOf(kv.Value); !ok {
			return fmt.Errorf("key %q has Go type %T", kv.Key, kv.Value)
		}
	}
	names := map[string]bool{}
	var hdr countWriter
	if err := encodeHeader(&hdr, f.Version, f.KVs, f.Tensors); err != nil {
		return err
	}
	wantData := hdr.n
	if len(f.Tensors) > 0 {
		wantData = int64(alignUp(uint64(hdr.n), f.Alignment))
	}
	if f.DataOffset != wantData || f.DataOffset > f.FileSize {
		return fmt.Errorf("DataOffset %d, header ends at %d, file size %d", f.DataOffset, hdr.n, f.FileSize)
	}
	type span struct{ lo, hi uint64 }
	var spans []span
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Name == "" || len(t.Name) > MaxTensorName || names[t.Name] {
			return fmt.Errorf("bad or duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		if len(t.Dims) == 0 || len(t.Dims) > MaxDims || !t.Type.Known() {
			return fmt.Errorf("tensor %q: %d dims, type %v", t.Name, len(t.Dims), t.Type)
		}
		size, ok := t.Type.RowSize(t.Dims[0])
		if !ok {
			return fmt.Errorf("tensor %q: row %d of %s", t.Name, t.Dims[0], t.Type)
		}
		for _, d := range t.Dims[1:] {
			size *= d
		}
		if t.Dims[0] == 0 || size != t.Size || t.NumElements() == 0 {
			return fmt.Errorf("tensor %q: size %d, dims %v", t.Name, t.Size, t.Dims)
		}
		if t.Offset%f.Alignment != 0 || uint64(f.DataOffset)+t.Offset+t.Size > uint64(f.FileSize) || t.Offset+t.Size < t.Offset {
			return fmt.Errorf("tensor %q: offset %d size %d, data at %d, file %d", t.Name, t.Offset, t.Size, f.DataOffset, f.FileSize)
		}
		for _, s := range spans {
			if t.Offset < s.hi && s.lo < t.Offset+t.Size {
				return fmt.Errorf("tensor %q overlaps [%d,%d)", t.Name, s.lo, s.hi)
			}
		}
		spans = append(spans, span{t.Offset, t.Offset + t.Size})
		b, err := f.ReadTensorAt(bytes.NewReader(data), t.Name)
		if err != nil || uint64(len(b)) != t.Size {
			return fmt.Errorf("tensor %q: read %d bytes, %v", t.Name, len(b), err)
		}
	}
	// The File holds everything in the header: encoding it gives the same
	// bytes.
	var buf bytes.Buffer
	if err := encodeHeader(&buf, f.Version, f.KVs, f.Tensors); err != nil {
		return err
	}
	if !bytes.Equal(buf.Bytes(), data[:buf.Len()]) {
		return errors.New("the File does not encode back to its header bytes")
	}
	return nil
}

// fuzzSeeds returns the seed corpus of FuzzParse by file name.
func fuzzSeeds(t *testing.T) map[string][]byte {
	model := tinyCorpusModel(t)
	f, err := Parse(bytes.NewReader(model), int64(len(model)))
	if err != nil {
		t.Fatal(err)
	}
	var vocabOnly Writer
	for _, kv := range f.KVs {
		if kv.Key == "general.architecture" || kv.Key == "tokenizer.ggml.model" || kv.Key == "tokenizer.ggml.tokens" {
			if err := vocabOnly.AddKV(kv.Key, kv.Value); err != nil {
				t.Fatal(err)
			}
		}
	}
	var allTypes Writer
	for _, kv := range allKVs {
		if kv.Key == "a.str" {
			kv.Value = []string{"", "a", "bc"}
		}
		if err := allTypes.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := allTypes.AddKV("general.alignment", uint32(8)); err != nil {
		t.Fatal(err)
	}
	if err := allTypes.AddTensor("x", Q4_0, []uint64{32, 2}, make([]byte, 36)); err != nil {
		t.Fatal(err)
	}
	v2 := baseGGUF()
	v2.version = 2
	badMagic := append([]byte("GGML"), model[4:200]...)
	return map[string][]byte{
		"seed-tiny-model":       model,
		"seed-tiny-header-only": model[:f.DataOffset],
		"seed-tiny-cut-kvs":     model[:300],
		"seed-tiny-cut-tensors": model[:f.DataOffset-40],
		"seed-tiny-cut-data":    model[:len(model)-100],
		"seed-tiny-24":          model[:24],
		"seed-base":             baseGGUF().bytes(),
		"seed-base-v2":          v2.bytes(),
		"seed-vocab-only":       writerBytes(t, &vocabOnly),
		"seed-all-kv-types":     writerBytes(t, &allTypes),
		"seed-bad-magic":        badMagic,
		"seed-text":             []byte("# not a model\n"),
	}
}

func writerBytes(t *testing.T, w *Writer) []byte {
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tinyCorpusModel builds a complete llama model small enough for a fuzz
// seed: one layer, d_model 32, 2 heads, d_ff 32, 40 tokens, Q8_0 matrices.
func tinyCorpusModel(t *testing.T) []byte {
	var w Writer
	tokens := make([]string, 40)
	scores := make([]float32, 40)
	types := make([]int32, 40)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("t%d", i)
		scores[i] = -float32(i)
		types[i] = 1
	}
	tokens[0], tokens[1], tokens[2] = "<unk>", "<s>", "</s>"
	kvs := []KV{
		{"general.architecture", "llama"},
		{"general.name", "fuzz-seed"},
		{"general.file_type", uint32(7)},
		{"llama.context_length", uint32(64)},
		{"llama.embedding_length", uint32(32)},
		{"llama.block_count", uint32(1)},
		{"llama.feed_forward_length", uint32(32)},
		{"llama.attention.head_count", uint32(2)},
		{"llama.attention.head_count_kv", uint32(1)},
		{"llama.rope.dimension_count", uint32(16)},
		{"llama.rope.freq_base", float32(10000)},
		{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", uint32(1)},
		{"tokenizer.ggml.eos_token_id", uint32(2)},
		{"tokenizer.ggml.add_bos_token", true},
	}
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	add := func(name string, typ GGMLType, dims ...uint64) {
		n, _ := typ.RowSize(dims[0])
		for _, d := range dims[1:] {
			n *= d
		}
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i * 13)
		}
		if err := w.AddTensor(name, typ, dims, data); err != nil {
			t.Fatal(err)
		}
	}
	add("token_embd.weight", Q8_0, 32, 40)
	add("output_norm.weight", F32, 32)
	add("blk.0.attn_norm.weight", F32, 32)
	add("blk.0.attn_q.weight", Q8_0, 32, 32)
	add("blk.0.attn_k.weight", Q8_0, 32, 16)
	add("blk.0.attn_v.weight", Q8_0, 32, 16)
	add("blk.0.attn_output.weight", Q8_0, 32, 32)
	add("blk.0.ffn_norm.weight", F32, 32)
	add("blk.0.ffn_gate.weight", Q8_0, 32, 32)
	add("blk.0.ffn_up.weight", Q8_0, 32, 32)
	add("blk.0.ffn_down.weight", Q8_0, 32, 32)
	return writerBytes(t, &w)
}

// TestFuzzCorpus checks that the seed files under testdata/fuzz/FuzzParse
// are up to date (go test -run FuzzCorpus -update rewrites them), and that
// the valid seeds are valid.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	for name, data := range fuzzSeeds(t) {
		p := filepath.Join(dir, name)
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v); run go test ./models -run FuzzCorpus -update", p, err)
		}
	}
	model := tinyCorpusModel(t)
	f, err := Parse(bytes.NewReader(model), int64(len(model)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckRunnable(); err != nil {
		t.Errorf("the tiny seed model is not runnable: %v", err)
	}
	if err := consistent(f, model); err != nil {
		t.Error(err)
	}
}
