package models

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated files under testdata")

// FuzzParse checks that Parse never panics, allocates memory in proportion
// to its input, rejects bad input with a *FormatError, and returns only
// Files that are consistent and encode back to the bytes they came from.
// Then it checks the validators on the File and on mutations of its
// metadata that the byte mutations of the fuzzer rarely make (a duplicated
// string, a float set to NaN, an array cut short or of another type; see
// mutateKVs): they never panic, and what they accept keeps the promises
// llama.cpp relies on (see llamaPromises). Seeds are in
// testdata/fuzz/FuzzParse (see TestFuzzCorpus).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
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
		// None may panic on anything Parse accepts.
		file.Info()
		file.CheckRunnable()
		file.CheckVocab()
		// Strings cost their bytes plus a 16-byte header per 8-byte length
		// prefix, typed arrays at most 8 bytes per input byte, and growing
		// slices by appending can double that; the window is 64 KiB.
		// Reading every tensor costs at most the file size, and the
		// checks a map entry per token.
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*uint64(len(data))+1<<20 {
			t.Errorf("%d bytes of input allocated %d bytes", len(data), alloc)
		}

		checkPromises(t, file, "")
		h := fnv.New64a()
		h.Write(data)
		seed := h.Sum64()
		for kind := range numMutations {
			g := *file
			var what string
			g.KVs, what = mutateKVs(slices.Clone(file.KVs), kind, seed+uint64(kind))
			checkPromises(t, &g, what)
		}
	})
}

// checkPromises runs the validators on f, which what made, and checks that
// what they accept keeps llama.cpp's promises.
func checkPromises(t *testing.T, f *File, what string) {
	t.Helper()
	vocabErr := f.CheckVocab()
	runErr := f.CheckRunnable()
	if vocabErr == nil {
		if err := llamaPromises(f, false); err != nil {
			t.Errorf("CheckVocab accepts a file (%s) that %v", what, err)
		}
	}
	if runErr == nil {
		if vocabErr != nil {
			t.Errorf("CheckRunnable accepts a file (%s) whose vocabulary CheckVocab refuses: %v", what, vocabErr)
		}
		if err := llamaPromises(f, true); err != nil {
			t.Errorf("CheckRunnable accepts a file (%s) that %v", what, err)
		}
	}
	for _, err := range []error{vocabErr, runErr} {
		var fe *FormatError
		if err != nil && (!errors.As(err, &fe) || fe.Problem == "" || fe.Fix == "") {
			t.Errorf("%s: error %T %v is not a *FormatError with a Problem and a Fix", what, err, err)
		}
	}
}

// llamaPromises checks, independently of the validators, what llama.cpp's
// loader takes for granted (without asserting, or without checking at
// all) about a file: about its vocabulary, and with hparams about its
// hyperparameters too. It returns what is broken.
func llamaPromises(f *File, hparams bool) error {
	model, _ := f.String("tokenizer.ggml.model")
	if model != "llama" && model != "gpt2" {
		return fmt.Errorf("has tokenizer %q", model)
	}
	toks, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(toks) == 0 {
		return errors.New("has no tokens")
	}
	n := len(toks)
	seen := map[string]bool{}
	for i, s := range toks {
		if s == "" {
			s = fmt.Sprintf("[EMPTY_%d]", i)
		}
		if seen[s] {
			return fmt.Errorf("has the token %q twice", s)
		}
		seen[s] = true
	}
	if v, ok := f.Get("tokenizer.ggml.scores"); ok {
		x, ok := v.([]float32)
		if !ok || len(x) != n {
			return fmt.Errorf("has %s scores for %d tokens", valueTypeName(v), n)
		}
		for _, s := range x {
			if s != s {
				return errors.New("has a NaN score")
			}
		}
	}
	if v, ok := f.Get("tokenizer.ggml.token_type"); ok {
		x, ok := v.([]int32)
		if !ok || len(x) != n {
			return fmt.Errorf("has %s token types for %d tokens", valueTypeName(v), n)
		}
		for i, ty := range x {
			if ty < 0 || ty > 6 {
				return fmt.Errorf("has token type %d", ty)
			}
			if ty == 6 && model == "llama" && !isByteToken(toks[i]) {
				return fmt.Errorf("has byte token %q", toks[i])
			}
		}
	}
	if _, ok := f.Strings("tokenizer.ggml.merges"); model == "gpt2" && !ok {
		return errors.New("has no merges")
	}
	defaults := map[string]uint32{"llama": 2, "gpt2": 11}
	for _, k := range []string{"bos", "eos"} {
		v, ok := f.Get("tokenizer.ggml." + k + "_token_id")
		id, isU32 := v.(uint32)
		if ok && (!isU32 || int(id) >= n) || !ok && int(defaults[model]) >= n {
			return fmt.Errorf("has %s id %v for %d tokens", k, v, n)
		}
	}
	if !hparams {
		return nil
	}
	a := f.Architecture() + "."
	for _, k := range []string{"attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon", "rope.freq_base", "rope.scaling.attn_factor"} {
		if v, ok := f.Get(a + k); ok {
			x, ok := v.(float32)
			if !ok || !(x > 0) || x > math.MaxFloat32 {
				return fmt.Errorf("has %s%s = %v", a, k, v)
			}
		}
	}
	if v, ok := f.Get(a + "rope.scaling.type"); ok && !slices.Contains(ropeScalingTypes, fmt.Sprint(v)) {
		return fmt.Errorf("has rope scaling %v", v)
	}
	for _, k := range expertKeys {
		if v, ok := f.Get(a + k); ok && v != uint32(0) {
			return fmt.Errorf("has %s%s = %v", a, k, v)
		}
	}
	nl, _ := f.Uint(a + "block_count")
	for _, k := range perLayerKeys {
		v, _ := f.Get(a + k)
		if t, _ := ggufTypeOf(v); t.array && (t.elem != ggufUint32 || uint64(arrayLen(v)) != nl) {
			return fmt.Errorf("has %s%s = %v for %d layers", a, k, v, nl)
		}
	}
	return nil
}

// numMutations is the number of kinds of mutateKVs.
const numMutations = 7

// mutateKVs changes kvs in one of numMutations ways (kind), with the
// details drawn from seed, and says what it did.
func mutateKVs(kvs []KV, kind int, seed uint64) ([]KV, string) {
	r := rand.New(rand.NewPCG(seed, uint64(kind)))
	pick := func(ok func(v any) bool) int {
		var idx []int
		for i, kv := range kvs {
			if ok(kv.Value) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return -1
		}
		return idx[r.IntN(len(idx))]
	}
	switch kind {
	case 0: // duplicate a string of a string array, or flip a bit in one
		i := pick(func(v any) bool { s, ok := v.([]string); return ok && len(s) >= 2 })
		if i < 0 {
			break
		}
		a := slices.Clone(kvs[i].Value.([]string))
		j, k := r.IntN(len(a)), r.IntN(len(a))
		if b := []byte(a[k]); r.IntN(2) == 0 && len(b) > 0 {
			b[r.IntN(len(b))] ^= 1 << r.IntN(8)
			a[k] = string(b)
		} else {
			a[k] = a[j]
		}
		kvs[i].Value = a
		return kvs, fmt.Sprintf("%s[%d] changed to %q", kvs[i].Key, k, a[k])
	case 1: // a float special
		i := pick(func(v any) bool { _, ok := v.(float32); return ok })
		if i < 0 {
			break
		}
		specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0,
			float32(math.Copysign(0, -1)), -1, math.SmallestNonzeroFloat32, math.MaxFloat32, 1}
		kvs[i].Value = specials[r.IntN(len(specials))]
		return kvs, fmt.Sprintf("%s set to %v", kvs[i].Key, kvs[i].Value)
	case 2: // an array cut short or made longer
		i := pick(func(v any) bool { t, _ := ggufTypeOf(v); return t.array })
		if i < 0 {
			break
		}
		v := reflect.ValueOf(kvs[i].Value)
		n := r.IntN(v.Len() + 2)
		out := reflect.MakeSlice(v.Type(), n, n)
		reflect.Copy(out, v)
		kvs[i].Value = out.Interface()
		return kvs, fmt.Sprintf("%s of %d elements has %d", kvs[i].Key, v.Len(), n)
	case 3: // an array of another element type, of the same length
		i := pick(func(v any) bool { t, _ := ggufTypeOf(v); return t.array })
		if i < 0 {
			break
		}
		n := reflect.ValueOf(kvs[i].Value).Len()
		others := []any{make([]float32, n), make([]int32, n), make([]uint32, n), make([]uint8, n), make([]string, n), make([]float64, n)}
		kvs[i].Value = others[r.IntN(len(others))]
		return kvs, fmt.Sprintf("%s is %s", kvs[i].Key, valueTypeName(kvs[i].Value))
	case 4: // another tokenizer
		names := []string{"llama", "gpt2", "bert", "t5", "rwkv", "plamo2", "none", "no_vocab", ""}
		kvs = setKV(kvs, "tokenizer.ggml.model", names[r.IntN(len(names))])
		return kvs, "tokenizer.ggml.model changed"
	case 5: // a key of another type, or a special token id anywhere
		i := pick(func(v any) bool { return true })
		if i < 0 {
			break
		}
		others := []any{int32(-1), uint32(r.Uint32()), uint32(r.IntN(64)), float32(1), "x", true, uint64(1)}
		kvs[i].Value = others[r.IntN(len(others))]
		return kvs, fmt.Sprintf("%s set to %T %v", kvs[i].Key, kvs[i].Value, kvs[i].Value)
	case 6: // a key dropped
		i := pick(func(v any) bool { return true })
		if i < 0 {
			break
		}
		key := kvs[i].Key
		return slices.Delete(kvs, i, i+1), key + " dropped"
	}
	return kvs, "unchanged"
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
	seeds := map[string][]byte{
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
	for _, c := range badSeeds {
		seeds["seed-tiny-"+c.name] = editedBytes(t, model, c.edit)
	}
	return seeds
}

// badSeeds are the tiny seed model with metadata llama.cpp's loader
// trusts and the validators refuse; want is in the error.
var badSeeds = []struct {
	name string
	edit func(kvs []KV) []KV
	want string
}{
	{"dup-token", func(kvs []KV) []KV { return withToken(kvs, 7, "t8") }, `holds "t8" twice`},
	{"empty-tokens", func(kvs []KV) []KV {
		kvs = setKV(kvs, "tokenizer.ggml.tokens", []string{})
		return deleteKV(deleteKV(kvs, "tokenizer.ggml.scores"), "tokenizer.ggml.token_type")
	}, "tokenizer.ggml.tokens is empty"},
	{"short-scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]float32, 39)) }, "tokenizer.ggml.scores has 39 values for 40 tokens"},
	{"int32-scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]int32, 40)) }, "tokenizer.ggml.scores has type array of int32"},
	{"uint8-token-type", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", make([]uint8, 40)) }, "tokenizer.ggml.token_type has type array of uint8"},
	{"bert-tokenizer", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", "bert") }, `tokenizer.ggml.model is "bert"`},
	{"nan-eps", func(kvs []KV) []KV { return setKV(kvs, "llama.attention.layer_norm_rms_epsilon", float32(math.NaN())) }, "layer_norm_rms_epsilon is NaN"},
	{"negative-eps", func(kvs []KV) []KV { return setKV(kvs, "llama.attention.layer_norm_rms_epsilon", float32(-1e-5)) }, "layer_norm_rms_epsilon is -1e-05"},
	{"zero-rope-base", func(kvs []KV) []KV { return setKV(kvs, "llama.rope.freq_base", float32(0)) }, "llama.rope.freq_base is 0"},
	{"rope-scaling-type", func(kvs []KV) []KV { return setKV(kvs, "llama.rope.scaling.type", "bogus") }, `llama.rope.scaling.type is "bogus"`},
	{"short-head-counts", func(kvs []KV) []KV { return setKV(kvs, "llama.attention.head_count", []uint32{}) }, "head_count has 0 per-layer values"},
}

// editedBytes returns the GGUF file model with its metadata changed by edit.
func editedBytes(t *testing.T, model []byte, edit func(kvs []KV) []KV) []byte {
	f, err := Parse(bytes.NewReader(model), int64(len(model)))
	if err != nil {
		t.Fatal(err)
	}
	var w Writer
	for _, kv := range edit(slices.Clone(f.KVs)) {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		data, err := f.ReadTensorAt(bytes.NewReader(model), ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, data); err != nil {
			t.Fatal(err)
		}
	}
	return writerBytes(t, &w)
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
	for _, c := range badSeeds {
		b := editedBytes(t, model, c.edit)
		f, err := Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("seed %s: %v", c.name, err)
		}
		if err := f.CheckRunnable(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("seed %s: CheckRunnable() = %v, want %q", c.name, err, c.want)
		}
		// the fuzz target's own account of llama.cpp's needs agrees
		if llamaPromises(f, true) == nil {
			t.Errorf("seed %s: llamaPromises finds nothing wrong", c.name)
		}
	}
	if err := llamaPromises(f, true); err != nil {
		t.Errorf("the tiny seed model %v", err)
	}
}
