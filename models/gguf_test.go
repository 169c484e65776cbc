package models

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

func TestGGMLTypeTraits(t *testing.T) {
	// Block layouts from ggml-common.h, written out by hand.
	tests := []struct {
		t          GGMLType
		name       string
		block, siz int
	}{
		{F32, "F32", 1, 4},
		{F16, "F16", 1, 2},
		{Q4_0, "Q4_0", 32, 18},
		{Q4_1, "Q4_1", 32, 20},
		{Q5_0, "Q5_0", 32, 22},
		{Q5_1, "Q5_1", 32, 24},
		{Q8_0, "Q8_0", 32, 34},
		{Q8_1, "Q8_1", 32, 36},
		{Q2_K, "Q2_K", 256, 84},
		{Q3_K, "Q3_K", 256, 110},
		{Q4_K, "Q4_K", 256, 144},
		{Q5_K, "Q5_K", 256, 176},
		{Q6_K, "Q6_K", 256, 210},
		{Q8_K, "Q8_K", 256, 292},
		{IQ2_XXS, "IQ2_XXS", 256, 66},
		{IQ2_XS, "IQ2_XS", 256, 74},
		{IQ3_XXS, "IQ3_XXS", 256, 98},
		{IQ1_S, "IQ1_S", 256, 50},
		{IQ4_NL, "IQ4_NL", 32, 18},
		{IQ3_S, "IQ3_S", 256, 110},
		{IQ2_S, "IQ2_S", 256, 82},
		{IQ4_XS, "IQ4_XS", 256, 136},
		{I8, "I8", 1, 1},
		{I16, "I16", 1, 2},
		{I32, "I32", 1, 4},
		{I64, "I64", 1, 8},
		{F64, "F64", 1, 8},
		{IQ1_M, "IQ1_M", 256, 56},
		{BF16, "BF16", 1, 2},
		{TQ1_0, "TQ1_0", 256, 54},
		{TQ2_0, "TQ2_0", 256, 66},
		{MXFP4, "MXFP4", 32, 17},
	}
	if len(tests) != len(GGMLTypes()) {
		t.Errorf("test covers %d types, package knows %d", len(tests), len(GGMLTypes()))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.String(); got != tt.name {
				t.Errorf("String() = %q, want %q", got, tt.name)
			}
			if !tt.t.Known() {
				t.Error("Known() = false")
			}
			if got := tt.t.BlockSize(); got != tt.block {
				t.Errorf("BlockSize() = %d, want %d", got, tt.block)
			}
			if got := tt.t.TypeSize(); got != tt.siz {
				t.Errorf("TypeSize() = %d, want %d", got, tt.siz)
			}
			for _, s := range []string{tt.name, strings.ToLower(tt.name), " " + tt.name + " "} {
				if got, err := ParseGGMLType(s); err != nil || got != tt.t {
					t.Errorf("ParseGGMLType(%q) = %v, %v", s, got, err)
				}
			}
		})
	}
	for _, u := range []GGMLType{4, 5, 31, 32, 33, 36, 37, 38, 40, 1 << 31} {
		if u.Known() || u.BlockSize() != 0 || u.TypeSize() != 0 {
			t.Errorf("type %d: Known %v BlockSize %d TypeSize %d, want false 0 0", uint32(u), u.Known(), u.BlockSize(), u.TypeSize())
		}
		if !strings.HasPrefix(u.String(), "GGMLType(") {
			t.Errorf("String() of unknown type = %q", u.String())
		}
	}
	for s, want := range map[string]GGMLType{"fp16": F16, "FP32": F32, "bf16": BF16} {
		if got, err := ParseGGMLType(s); err != nil || got != want {
			t.Errorf("ParseGGMLType(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := ParseGGMLType("q4_2"); err == nil || !strings.Contains(err.Error(), "Q8_0") {
		t.Errorf("ParseGGMLType(q4_2) error = %v, want one listing the known types", err)
	}
	if n, ok := Q8_0.RowSize(4096); !ok || n != 4096/32*34 {
		t.Errorf("Q8_0.RowSize(4096) = %d, %v", n, ok)
	}
	if _, ok := Q4_K.RowSize(100); ok {
		t.Error("Q4_K.RowSize(100) ok, want false")
	}
}

func TestParseValid(t *testing.T) {
	b := baseGGUF().bytes()
	f, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 32 || f.FileSize != int64(len(b)) || f.Path != "" {
		t.Errorf("Version %d Alignment %d FileSize %d Path %q", f.Version, f.Alignment, f.FileSize, f.Path)
	}
	if want := int64(len(b) - 96); f.DataOffset != want || f.DataOffset%32 != 0 {
		t.Errorf("DataOffset = %d, want %d", f.DataOffset, want)
	}
	if f.Architecture() != "llama" {
		t.Errorf("Architecture() = %q", f.Architecture())
	}
	tb, ok := f.Tensor("b")
	if !ok || tb.Type != F32 || tb.Offset != 32 || tb.Size != 64 || tb.NumElements() != 16 || len(tb.Dims) != 2 {
		t.Errorf("tensor b = %+v, %v", tb, ok)
	}
	data, err := f.ReadTensorAt(bytes.NewReader(b), "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 64 || data[0] != 32 || data[63] != 95 {
		t.Errorf("ReadTensorAt(b) = %v", data)
	}
	if _, err := f.ReadTensor("b"); err == nil {
		t.Error("ReadTensor on a File from Parse: no error")
	}
}

func TestParseBad(t *testing.T) {
	bigDims := []uint64{1 << 40, 1 << 40}
	tests := []struct {
		name   string
		mutate func(g *rawGGUF)
		cut    int // bytes removed from the end
		want   string
	}{
		{"bad magic", func(g *rawGGUF) { g.magic = "GGML" }, 0, `not a GGUF file: it starts with "GGML`},
		{"old ggjt", func(g *rawGGUF) { g.magic = "tjgg" }, 0, "old GGML/GGJT"},
		{"big endian magic", func(g *rawGGUF) { g.magic = "FUGG" }, 0, "big-endian"},
		{"version 1", func(g *rawGGUF) { g.version = 1 }, 0, "version 1 is not supported"},
		{"version 4", func(g *rawGGUF) { g.version = 4 }, 0, "version 4 is not supported"},
		{"version 0", func(g *rawGGUF) { g.version = 0 }, 0, "version 0 is not supported"},
		{"byte-swapped version", func(g *rawGGUF) { g.version = 3 << 24 }, 0, "byte-swapped"},
		{"absurd tensor count", func(g *rawGGUF) { g.nTensors = ptr(uint64(1) << 62) }, 0, "claims 4611686018427387904 tensors"},
		{"absurd kv count", func(g *rawGGUF) { g.nKV = ptr(^uint64(0)) }, 0, "claims 18446744073709551615 metadata entries"},
		{"counts too large together", func(g *rawGGUF) { g.nKV = ptr(uint64(10)); g.nTensors = ptr(uint64(5)) }, 0, "more than the"},
		{"tensor count one too many", func(g *rawGGUF) { g.nTensors = ptr(uint64(3)) }, 0, "tensor"},
		{"string longer than file", func(g *rawGGUF) { g.kvs[0] = rawKV{"k", uint32(ggufString), le64(1 << 50)} }, 0, "claims to be 1125899906842624 bytes long"},
		{"empty key", func(g *rawGGUF) { g.kvs[0].key = "" }, 0, "empty key"},
		{"duplicate key", func(g *rawGGUF) { g.kvs[1] = kvStr("general.architecture", "x") }, 0, `key "general.architecture" appears twice`},
		{"unknown value type", func(g *rawGGUF) { g.kvs[0].typ = 13 }, 0, "unknown value type 13"},
		{"nested array", func(g *rawGGUF) {
			g.kvs[0] = rawKV{"a", uint32(ggufArray), append(le32(uint32(ggufArray)), le64(0)...)}
		}, 0, "array of arrays"},
		{"array of unknown type", func(g *rawGGUF) {
			g.kvs[0] = rawKV{"a", uint32(ggufArray), append(le32(99), le64(0)...)}
		}, 0, "array of unknown value type 99"},
		{"array longer than file", func(g *rawGGUF) {
			g.kvs[0] = rawKV{"a", uint32(ggufArray), append(le32(uint32(ggufUint32)), le64(1<<40)...)}
		}, 0, "claims 1099511627776 array elements"},
		{"string array longer than file", func(g *rawGGUF) {
			g.kvs[0] = rawKV{"a", uint32(ggufArray), append(le32(uint32(ggufString)), le64(1<<40)...)}
		}, 0, "claims 1099511627776 array elements"},
		{"bad bool", func(g *rawGGUF) { g.kvs[0] = rawKV{"b", uint32(ggufBool), []byte{2}} }, 0, "not 0 or 1"},
		{"bad bool in array", func(g *rawGGUF) {
			g.kvs[0] = rawKV{"b", uint32(ggufArray), append(append(le32(uint32(ggufBool)), le64(3)...), 0, 1, 7)}
		}, 0, "element 2 of bool array"},
		{"alignment not uint32", func(g *rawGGUF) { g.kvs[1] = rawKV{"general.alignment", uint32(ggufUint64), le64(32)} }, 0, "general.alignment has type uint64"},
		{"alignment not power of two", func(g *rawGGUF) { g.kvs[1] = kvU32("general.alignment", 48) }, 0, "not a power of two"},
		{"alignment zero", func(g *rawGGUF) { g.kvs[1] = kvU32("general.alignment", 0) }, 0, "not a power of two"},
		{"empty tensor name", func(g *rawGGUF) { g.tensors[0].name = "" }, 0, "empty name"},
		{"tensor name too long", func(g *rawGGUF) { g.tensors[0].name = strings.Repeat("n", 64) }, 0, "longer than ggml's limit of 63"},
		{"duplicate tensor", func(g *rawGGUF) { g.tensors[1].name = "a" }, 0, `tensor name "a" appears twice`},
		{"zero dims", func(g *rawGGUF) { g.tensors[0].dims = nil }, 0, `tensor "a" has 0 dimensions`},
		{"five dims", func(g *rawGGUF) { g.tensors[0].dims = []uint64{8, 1, 1, 1, 1} }, 0, "has 5 dimensions"},
		{"dimension of size 0", func(g *rawGGUF) { g.tensors[1].dims = []uint64{8, 0} }, 0, "dimension 1 of size 0"},
		{"element count overflows", func(g *rawGGUF) { g.tensors[1].dims = bigDims }, 0, "more than 2^63 elements"},
		{"size overflows", func(g *rawGGUF) { g.tensors[1].dims = []uint64{1 << 31, 1 << 31}; g.tensors[1].typ = uint32(I64) }, 0, "absurd dimensions"},
		{"removed type", func(g *rawGGUF) { g.tensors[0].typ = 4 }, 0, "unknown ggml type 4"},
		{"unknown type", func(g *rawGGUF) { g.tensors[0].typ = 1000 }, 0, "unknown ggml type 1000"},
		{"row not multiple of block", func(g *rawGGUF) { g.tensors[1].typ = uint32(Q8_0); g.tensors[1].dims = []uint64{40, 2} }, 0, "rows of 40 elements, not a multiple of the block size 32"},
		{"misaligned offset", func(g *rawGGUF) { g.tensors[1].off = 48 }, 0, "not a multiple of the alignment 32"},
		{"overlapping tensors", func(g *rawGGUF) { g.tensors[0].dims = []uint64{16} }, 0, "overlap"},
		{"same offset", func(g *rawGGUF) { g.tensors[1].off = 0 }, 0, "overlap"},
		{"offset past end", func(g *rawGGUF) { g.tensors[1].off = 1 << 60 }, 0, `the file is 288 bytes long, but its tensor data needs 1152921504606847232 bytes (tensor "b" ends there)`},
		{"offset near 2^64", func(g *rawGGUF) { g.tensors[1].off = ^uint64(31) }, 0, "needs more than 2^64 bytes"},
		{"truncated data", nil, 10, `the file is 278 bytes long, but its tensor data needs 288 bytes (tensor "b" ends there): the file is truncated`},
		{"truncated before data", nil, 96 + 2, "should start at byte"},
		{"truncated in tensor table", nil, 96 + 20, "file ends while reading"},
		{"header only", func(g *rawGGUF) { g.kvs = nil; g.tensors = nil; g.data = 0 }, 1, "file ends while reading metadata count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := baseGGUF()
			if tt.mutate != nil {
				tt.mutate(&g)
			}
			b := g.bytes()
			b = b[:len(b)-tt.cut]
			f, err := Parse(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FormatError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
			if fe.Fix == "" {
				t.Errorf("error %q has no Fix", err)
			}
		})
	}
}

func TestParseTextAndShort(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []string
	}{
		{"empty", "", []string{"only 0 bytes long"}},
		{"three bytes", "GGU", []string{"only 3 bytes long"}},
		{"text", "# Model card\nThis is a model.\n", []string{`starts with "# Model card"`, "looks like a text file"}},
		{"json", `{"architectures": ["LlamaForCausalLM"]}`, []string{`starts with "{\"architectures\""`, "text file"}},
		{"zip", "PK\x03\x04\x00\x00\x00", []string{"zip archive"}},
		{"binary", "\x00\x01\x02\x03\x04\x05", []string{`starts with "\x00\x01\x02\x03`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.data), int64(len(tt.data)))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tt.want, "not a GGUF file", ".gguf model file") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.gguf")
	_, err := Open(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Open(missing) = %v", err)
	}

	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), dir) {
		t.Errorf("Open(dir) = %v", err)
	}

	text := writeTemp(t, "README.md", []byte("hello\nworld\n"))
	_, err = Open(text)
	if err == nil || !strings.Contains(err.Error(), text+": not a GGUF file") || !strings.Contains(err.Error(), "text file") {
		t.Errorf("Open(text) = %v", err)
	}

	// A real model cut short, as by an interrupted download.
	real, err := os.ReadFile(testmodels.Path(t, testmodels.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(real) - 1, len(real) / 2, 14176, 5000, 100, 10} {
		p := writeTemp(t, "cut.gguf", real[:n])
		_, err := Open(p)
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Path != p || !strings.Contains(fe.Fix, "truncated") && !strings.Contains(fe.Fix, "incomplete") {
			t.Errorf("Open(first %d bytes of stories260K) = %v, want a truncation error", n, err)
		}
	}
}

// TestOpenCorruptOffset corrupts the tensor table of a real model: a tensor
// offset moved off alignment, onto its neighbour and past the end.
func TestOpenCorruptOffset(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	real, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		off  func(old uint64) uint64
		want string
	}{
		{"misaligned", func(o uint64) uint64 { return o + 4 }, "not a multiple of the alignment 32"},
		{"onto neighbour", func(o uint64) uint64 { return o - 256 }, "overlap"},
		{"past end", func(o uint64) uint64 { return o + 1<<20 }, "the file is 1185376 bytes long, but its tensor data needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := append([]TensorInfo(nil), f.Tensors...)
			ts[5].Offset = tt.off(ts[5].Offset)
			var hdr bytes.Buffer
			if err := encodeHeader(&hdr, f.Version, f.KVs, ts); err != nil {
				t.Fatal(err)
			}
			if hdr.Len() > int(f.DataOffset) {
				t.Fatalf("header grew to %d bytes", hdr.Len())
			}
			b := append(hdr.Bytes(), real[hdr.Len():]...)
			_, err := Open(writeTemp(t, "corrupt.gguf", b))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), ts[5].Name) {
				t.Errorf("error %v, want %q about %s", err, tt.want, ts[5].Name)
			}
		})
	}
}

func TestOpenShared(t *testing.T) {
	tests := []struct {
		file       string
		nTensors   int
		dataOffset int64
		arch       string
		nTokens    int
		tensor     string
		typ        GGMLType
		dims       []uint64
		size       uint64
	}{
		{testmodels.Stories260K, 48, 14176, "llama", 512, "blk.0.ffn_down.weight", F32, []uint64{172, 64}, 172 * 64 * 4},
		{testmodels.TinyStories656KF16, 20, 50784, "llama", 2048, "token_embd.weight", F16, []uint64{128, 2048}, 128 * 2048 * 2},
		{testmodels.TinyStories656KQ8, 20, 50848, "llama", 2048, "token_embd.weight", Q8_0, []uint64{128, 2048}, 128 * 2048 / 32 * 34},
		{testmodels.VocabLlamaSPM, 0, 723869, "llama", 32000, "", 0, nil, 0},
		{testmodels.VocabGPT2, 0, 1766807, "gpt2", 50257, "", 0, nil, 0},
		{testmodels.VocabGPTNeoX, 0, 1771431, "gptneox", 50432, "", 0, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := testmodels.Path(t, tt.file)
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(path)
			if f.Path != path || f.Version != 3 || f.Alignment != 32 || f.FileSize != fi.Size() {
				t.Errorf("Path %q Version %d Alignment %d FileSize %d", f.Path, f.Version, f.Alignment, f.FileSize)
			}
			if len(f.Tensors) != tt.nTensors || f.DataOffset != tt.dataOffset {
				t.Errorf("%d tensors, data at %d; want %d, %d", len(f.Tensors), f.DataOffset, tt.nTensors, tt.dataOffset)
			}
			if f.Architecture() != tt.arch {
				t.Errorf("Architecture() = %q, want %q", f.Architecture(), tt.arch)
			}
			toks, ok := f.Strings("tokenizer.ggml.tokens")
			if !ok || len(toks) != tt.nTokens {
				t.Errorf("%d tokens, want %d", len(toks), tt.nTokens)
			}
			if tt.tensor == "" {
				return
			}
			ti, ok := f.Tensor(tt.tensor)
			if !ok {
				t.Fatalf("no tensor %s", tt.tensor)
			}
			if ti.Type != tt.typ || ti.Size != tt.size || !equalDims(ti.Dims, tt.dims) {
				t.Errorf("%s = %s %v %d bytes, want %s %v %d", tt.tensor, ti.Type, ti.Dims, ti.Size, tt.typ, tt.dims, tt.size)
			}
			if err := f.checkLayout(); err != nil {
				t.Errorf("real file fails the llama.cpp layout check: %v", err)
			}
		})
	}
}

func equalDims(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAccessors(t *testing.T) {
	f, err := Open(testmodels.Path(t, testmodels.TinyStories656KQ8))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Uint("llama.embedding_length"); !ok || v != 128 {
		t.Errorf("Uint(embedding_length) = %d, %v", v, ok)
	}
	if v, ok := f.Int("llama.block_count"); !ok || v != 2 {
		t.Errorf("Int(block_count) = %d, %v", v, ok)
	}
	if v, ok := f.Float("llama.attention.layer_norm_rms_epsilon"); !ok || v != 1e-6 {
		t.Errorf("Float(rms_epsilon) = %v, %v; want exactly 1e-6 (shortest decimal of the float32)", v, ok)
	}
	if v, ok := f.Bool("tokenizer.ggml.add_bos_token"); !ok || !v {
		t.Errorf("Bool(add_bos_token) = %v, %v", v, ok)
	}
	if v, ok := f.String("general.name"); !ok || v != "Raincandy U TinyStories 656K" {
		t.Errorf("String(general.name) = %q, %v", v, ok)
	}
	if v, ok := f.Strings("general.languages"); !ok || len(v) != 1 || v[0] != "en" {
		t.Errorf("Strings(general.languages) = %q, %v", v, ok)
	}
	scores, ok := f.Get("tokenizer.ggml.scores")
	if s, isF := scores.([]float32); !ok || !isF || len(s) != 2048 || s[100] != -1000 {
		t.Errorf("Get(scores) = %T, %v", scores, ok)
	}
	// Wrong types and missing keys.
	if _, ok := f.Uint("general.name"); ok {
		t.Error("Uint(general.name) ok")
	}
	if _, ok := f.String("llama.block_count"); ok {
		t.Error("String(block_count) ok")
	}
	if _, ok := f.Float("llama.block_count"); ok {
		t.Error("Float(block_count) ok")
	}
	if _, ok := f.Get("no.such.key"); ok {
		t.Error("Get(missing) ok")
	}
	if _, ok := f.Tensor("no.such.tensor"); ok {
		t.Error("Tensor(missing) ok")
	}
}

func TestReadTensorShared(t *testing.T) {
	// stories260K's output.weight is a copy of token_embd.weight.
	f, err := Open(testmodels.Path(t, testmodels.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := f.ReadTensor("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.ReadTensor("output.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(emb) != 64*512*4 || !bytes.Equal(emb, out) {
		t.Errorf("token_embd (%d bytes) and output (%d bytes) differ", len(emb), len(out))
	}
	if _, err := f.ReadTensor("nope"); err == nil || !strings.Contains(err.Error(), `no tensor "nope"`) {
		t.Errorf("ReadTensor(nope) = %v", err)
	}
	norm, err := f.ReadTensorFloat32("output_norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, v := range norm {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("output_norm has %v", v)
		}
		sum += float64(v)
	}
	if len(norm) != 64 || sum == 0 {
		t.Errorf("output_norm: %d values, sum %v", len(norm), sum)
	}
}

// TestParseLyingSize gives Parse a size far larger than the data, with
// counts that fit the claimed size: it must fail without allocating for
// the counts.
func TestParseLyingSize(t *testing.T) {
	g := baseGGUF()
	g.kvs = append(g.kvs,
		rawKV{"big.strings", uint32(ggufArray), append(le32(uint32(ggufString)), le64(1<<30)...)},
		rawKV{"big.floats", uint32(ggufArray), append(le32(uint32(ggufFloat32)), le64(1<<30)...)},
	)
	for _, kv := range []int{2, 3} {
		g := g
		g.kvs = append([]rawKV{g.kvs[kv]}, g.kvs[:2]...)
		b := g.bytes()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Parse(bytes.NewReader(b), 1<<40)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "file ends at byte") {
			t.Errorf("Parse = %v, want a truncation error", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("%s: Parse allocated %d bytes for %d bytes of data", g.kvs[0].key, alloc, len(b))
		}
	}
}

func TestOpenNotRegular(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null")
	}
	if _, err := Open("/dev/null"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(/dev/null) = %v", err)
	}
}
