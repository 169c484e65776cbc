package models

import (
	"reflect"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

func TestInfoShared(t *testing.T) {
	// Numbers from shared/models/MANIFEST.md and the files' metadata.
	// Parameter counts by hand: stories260K has token_embd and output
	// (64x512 each), output_norm 64, and per layer q, o 64x64, k, v 64x32,
	// gate, up, down 64x172 and two norms of 64: 65536+64+5*45440 = 292800.
	// TinyStories-656K: token_embd 128x2048, output_norm 128, per layer
	// q, o 128x128, k, v 128x64, three 128x384 and two norms of 128:
	// 262144+128+2*196864 = 656000.
	tests := []struct {
		file string
		want Info
	}{
		{testmodels.Stories260K, Info{
			Arch: "llama", Name: "llama", NLayer: 5, DModel: 64, NHead: 8, NHeadKV: 4, DHead: 8, DFF: 172,
			NVocab: 512, NCtxTrain: 2048, RopeBase: 10000, RopeDim: 8, NormEps: 1e-5,
			TokenizerModel: "llama", BOS: 1, EOS: 2, AddBOS: true, TiedEmbeddings: false,
			FileType: "", NParams: 292800, NBytes: 292800 * 4,
			TensorTypes: map[GGMLType]TypeStat{F32: {48, 292800, 292800 * 4}},
		}},
		{testmodels.TinyStories656KF16, Info{
			Arch: "llama", Name: "TinyStories-656K", NLayer: 2, DModel: 128, NHead: 8, NHeadKV: 4, DHead: 16, DFF: 384,
			NVocab: 2048, NCtxTrain: 512, RopeBase: 10000, RopeDim: 16, NormEps: 1e-6,
			TokenizerModel: "llama", BOS: 1, EOS: 2, AddBOS: true, TiedEmbeddings: true,
			FileType: "F16", NParams: 656000, NBytes: 640*4*1 + (656000-640)*2,
			TensorTypes: map[GGMLType]TypeStat{F32: {5, 640, 640 * 4}, F16: {15, 656000 - 640, (656000 - 640) * 2}},
		}},
		{testmodels.TinyStories656KQ8, Info{
			Arch: "llama", Name: "Raincandy U TinyStories 656K", NLayer: 2, DModel: 128, NHead: 8, NHeadKV: 4, DHead: 16, DFF: 384,
			NVocab: 2048, NCtxTrain: 512, RopeBase: 10000, RopeDim: 16, NormEps: 1e-6,
			TokenizerModel: "llama", BOS: 1, EOS: 2, AddBOS: true, TiedEmbeddings: true,
			FileType: "Q8_0", NParams: 656000, NBytes: 640*4 + (656000-640)/32*34,
			TensorTypes: map[GGMLType]TypeStat{F32: {5, 640, 640 * 4}, Q8_0: {15, 656000 - 640, (656000 - 640) / 32 * 34}},
		}},
		{testmodels.VocabLlamaSPM, Info{
			Arch: "llama", Name: "llama-spm", NLayer: 32, DModel: 4096, NHead: 32, NHeadKV: 32, DHead: 128, DFF: 11008,
			NVocab: 32000, NCtxTrain: 4096, RopeBase: 10000, RopeDim: 128, NormEps: 1e-5,
			TokenizerModel: "llama", BOS: 1, EOS: 2, AddBOS: true, VocabOnly: true,
			FileType: "F16", TensorTypes: map[GGMLType]TypeStat{},
		}},
		{testmodels.VocabGPT2, Info{
			Arch: "gpt2", Name: "gpt-2", NLayer: 12, DModel: 768, NHead: 12, NHeadKV: 12, DHead: 64, DFF: 3072,
			NVocab: 50257, NCtxTrain: 1024, NormEps: 1e-5, LayerNorm: true, LearnedPositions: true,
			TokenizerModel: "gpt2", BOS: 50256, EOS: 50256, AddBOS: false, VocabOnly: true,
			FileType: "F16", TensorTypes: map[GGMLType]TypeStat{},
		}},
		{testmodels.VocabGPTNeoX, Info{
			Arch: "gptneox", Name: "gpt-neox-20b", NLayer: 44, DModel: 6144, NHead: 64, NHeadKV: 64, DHead: 96, DFF: 24576,
			NVocab: 50432, NCtxTrain: 2048, RopeBase: 10000, RopeDim: 24, NormEps: 1e-5, LayerNorm: true, ParallelResidual: true,
			TokenizerModel: "gpt2", BOS: 0, EOS: 0, AddBOS: false, VocabOnly: true,
			FileType: "", TensorTypes: map[GGMLType]TypeStat{},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := Open(testmodels.Path(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Info()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Info() =\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

func TestInfoErrors(t *testing.T) {
	tests := []struct {
		name string
		kvs  []KV
		want string
	}{
		{"no architecture", []KV{{"general.name", "x"}}, "no general.architecture"},
		{"string block count", []KV{{"general.architecture", "llama"}, {"llama.block_count", "32"}}, "llama.block_count has type string, want uint32"},
		{"string eps", []KV{{"general.architecture", "llama"}, {"llama.attention.layer_norm_rms_epsilon", "1e-5"}}, "has type string, want float32"},
		{"int tokens", []KV{{"general.architecture", "llama"}, {"tokenizer.ggml.tokens", []int32{1}}}, "tokenizer.ggml.tokens has type array of int32"},
		{"short per-layer array", []KV{{"general.architecture", "llama"}, {"llama.attention.head_count", []uint32{}}}, "none for layer 0"},
		{"absurd block count", []KV{{"general.architecture", "llama"}, {"llama.block_count", uint64(1) << 40}}, "absurdly large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &File{Path: "m.gguf", KVs: tt.kvs}
			_, err := f.Info()
			if err == nil || !containsAll(err.Error(), "m.gguf", tt.want) {
				t.Errorf("Info() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestInfoPerLayer(t *testing.T) {
	f := &File{KVs: []KV{
		{"general.architecture", "llama"},
		{"llama.attention.head_count", []uint32{16, 8}},
		{"llama.feed_forward_length", []int32{512, 256}},
		{"llama.embedding_length", uint32(256)},
	}}
	in, err := f.Info()
	if err != nil {
		t.Fatal(err)
	}
	if in.NHead != 16 || in.NHeadKV != 16 || in.DFF != 512 || in.DHead != 16 || in.RopeDim != 16 {
		t.Errorf("per-layer Info: %+v", in)
	}
	if v, err := f.layerUint("llama.feed_forward_length", 1, 0); err != nil || v != 256 {
		t.Errorf("layerUint(ff, 1) = %d, %v", v, err)
	}
}

func TestFileTypeName(t *testing.T) {
	for ft, want := range map[uint64]string{0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 15: "Q4_K_M", 32: "BF16", 4: "unknown(4)", 1024: "unknown(1024)"} {
		if got := FileTypeName(ft); got != want {
			t.Errorf("FileTypeName(%d) = %q, want %q", ft, got, want)
		}
	}
	for _, typ := range synthTypes {
		ft, ok := FileTypeFor(typ)
		if !ok || FileTypeName(uint64(ft)) != typ.String() {
			t.Errorf("FileTypeFor(%s) = %d, %v (name %s)", typ, ft, ok, FileTypeName(uint64(ft)))
		}
	}
	if _, ok := FileTypeFor(Q6_K); ok {
		t.Error("FileTypeFor(Q6_K) ok")
	}
}
