package models

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// smallArchSpec is a small gpt2 or gptneox spec with the architecture's
// real vocabulary.
func smallArchSpec(t testing.TB, arch string, typ GGMLType) SynthSpec {
	return SynthSpec{
		Arch: arch, NLayer: 2, DModel: 64, NHead: 4, DFF: 128, NCtx: 128,
		VocabPath: testmodels.Path(t, SynthVocab(arch)), Type: typ, Seed: 3,
	}
}

func TestWriteSyntheticArch(t *testing.T) {
	for _, arch := range []string{"gpt2", "gptneox"} {
		for _, typ := range []GGMLType{F32, F16, Q8_0} {
			t.Run(arch+"-"+typ.String(), func(t *testing.T) {
				f := writeSynth(t, smallArchSpec(t, arch, typ))
				if err := f.CheckRunnable(); err != nil {
					t.Fatal(err)
				}
				in, err := f.Info()
				if err != nil {
					t.Fatal(err)
				}
				wantVocab := map[string]int{"gpt2": 50257, "gptneox": 50432}[arch]
				if in.Arch != arch || in.NLayer != 2 || in.DModel != 64 || in.NHead != 4 || in.NHeadKV != 4 || in.DHead != 16 ||
					in.DFF != 128 || in.NCtxTrain != 128 || in.NVocab != wantVocab || math.Abs(in.NormEps-1e-5) > 1e-12 ||
					!in.LayerNorm || in.TokenizerModel != "gpt2" || in.FileType != typ.String() {
					t.Errorf("Info() = %+v", in)
				}
				switch arch {
				case "gpt2":
					// tied as GPT-2 is, learned positions, no rope
					if !in.TiedEmbeddings || !in.LearnedPositions || in.RopeDim != 0 || in.ParallelResidual {
						t.Errorf("gpt2: %+v", in)
					}
				case "gptneox":
					// Pythia: untied, a quarter of the head rotated, parallel residual
					if in.TiedEmbeddings || in.LearnedPositions || in.RopeDim != 4 || in.RopeBase != 10000 || !in.ParallelResidual {
						t.Errorf("gptneox: %+v", in)
					}
				}
				// every matrix in the asked type, every vector F32
				for _, ti := range f.Tensors {
					want := typ
					if len(ti.Dims) == 1 {
						want = F32
					}
					if ti.Type != want {
						t.Errorf("%s is %s, want %s", ti.Name, ti.Type, want)
					}
				}
				for _, name := range []string{"blk.1.attn_qkv.bias", "blk.0.ffn_up.bias", "output_norm.bias"} {
					ti, ok := f.Tensor(name)
					if !ok {
						t.Fatalf("no %s", name)
					}
					v, err := f.ReadTensorFloat32(name)
					if err != nil {
						t.Fatal(err)
					}
					// biases are 0.1·N(0,1): mean near 0, spread near 0.1
					var s, ss float64
					for _, x := range v {
						s += float64(x)
						ss += float64(x) * float64(x)
					}
					n := float64(ti.NumElements())
					if sd := ss / n; s/n > 0.05 || s/n < -0.05 || sd < 0.005 || sd > 0.02 {
						t.Errorf("%s: mean %.3g, mean square %.3g, want about 0 and 0.01", name, s/n, sd)
					}
				}
			})
		}
	}
}

func TestWriteSyntheticArchVariants(t *testing.T) {
	s := smallArchSpec(t, "gptneox", F32)
	s.SequentialResidual, s.RopeDim, s.NHeadKV = true, 16, 2
	f := writeSynth(t, s)
	if err := f.CheckRunnable(); err != nil {
		t.Fatal(err)
	}
	in, _ := f.Info()
	if in.ParallelResidual || in.RopeDim != 16 || in.NHeadKV != 2 {
		t.Errorf("Info() = %+v", in)
	}
	if ti, _ := f.Tensor("blk.0.attn_qkv.weight"); !slices.Equal(ti.Dims, []uint64{64, 64 + 2*2*16}) {
		t.Errorf("attn_qkv.weight has shape %v with 2 kv heads of 16", ti.Dims)
	}
	if tab, _ := HookTableOf(in); !tab.Has(ResidMid) {
		t.Error("a sequential-residual gptneox has no resid_mid in its hook table")
	}

	g := smallArchSpec(t, "gpt2", F16)
	g.Untied = true
	f = writeSynth(t, g)
	if in, _ := f.Info(); in.TiedEmbeddings {
		t.Error("untied gpt2 has no output.weight")
	}

	// The default vocabulary is the architecture's own.
	d := SynthSpec{Arch: "gptneox", NLayer: 1, DModel: 32, NHead: 2, DFF: 64}
	testmodels.Path(t, testmodels.VocabGPTNeoX)
	f = writeSynth(t, d)
	if in, _ := f.Info(); in.NVocab != 50432 || in.Name != "synthetic-gptneox-1x32-F32" || in.RopeDim != 4 {
		t.Errorf("defaults: %+v", in)
	}
}

func TestWriteSyntheticArchErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *SynthSpec)
		want string
	}{
		{"odd rope dim", func(s *SynthSpec) { s.Arch = "gptneox"; s.RopeDim = 3 }, "RopeDim 3 must be even"},
		{"rope dim too large", func(s *SynthSpec) { s.Arch = "gptneox"; s.RopeDim = 18 }, "RopeDim 18 must be even and in 2..16"},
		{"gpt2 sequential", func(s *SynthSpec) { s.SequentialResidual = true }, "gptneox settings, not gpt2"},
		{"Q8_0 d_ff", func(s *SynthSpec) { s.Type = Q8_0; s.DFF = 100 }, "not both multiples of 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := smallArchSpec(t, "gpt2", F32)
			tc.edit(&s)
			s.VocabPath = testmodels.Path(t, SynthVocab(s.Arch))
			err := WriteSynthetic(filepath.Join(t.TempDir(), "m.gguf"), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("WriteSynthetic = %v, want %q", err, tc.want)
			}
		})
	}
	// A gpt2 head need not be even: it has no rotary embeddings.
	s := smallArchSpec(t, "gpt2", F32)
	s.DModel, s.NHead = 60, 4
	if err := WriteSynthetic(filepath.Join(t.TempDir(), "m.gguf"), s); err != nil {
		t.Errorf("gpt2 with heads of 15: %v", err)
	}
}

func TestSyntheticArchDeterminism(t *testing.T) {
	dir := t.TempDir()
	var files [3][]byte
	for i := range files {
		s := smallArchSpec(t, "gpt2", Q8_0)
		if i == 2 {
			s.Seed++
		}
		p := filepath.Join(dir, fmt.Sprint(i, ".gguf"))
		if err := WriteSynthetic(p, s); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[i] = b
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("the same spec wrote different files")
	}
	if bytes.Equal(files[0], files[2]) {
		t.Error("another seed wrote the same file")
	}
}

// TestSynthPresetArch checks the gpt2 and Pythia presets against the
// parameter counts of the real models (Hugging Face's num_parameters, with
// their vocabularies: GPT-2 50257 tokens, Pythia's embedding 50304 rows).
func TestSynthPresetArch(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		arch                      string
		layers, d, heads, ff, ctx int
		vocab                     int
		params                    int
	}{
		{"gpt2-small", "gpt2", 12, 768, 12, 3072, 1024, 50257, 124_439_808},
		{"pythia-70m", "gptneox", 6, 512, 8, 2048, 2048, 50304, 70_426_624},
		{"pythia-160m", "gptneox", 12, 768, 12, 3072, 2048, 50304, 162_322_944},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SynthPreset(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if s.Arch != tc.arch || s.NLayer != tc.layers || s.DModel != tc.d || s.NHead != tc.heads || s.NHeadKV != tc.heads ||
				s.DFF != tc.ff || s.NCtx != tc.ctx || s.Untied != (tc.arch == "gptneox") || s.Name != "synthetic-"+tc.name {
				t.Errorf("SynthPreset(%q) = %+v", tc.name, s)
			}
			for _, typ := range []GGMLType{F32, F16, Q8_0} {
				s.Type = typ
				n, err := s.normalize()
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
				if tc.arch == "gptneox" && n.RopeDim != 16 {
					t.Errorf("rope dimension %d, want 16 (Pythia's rotary_pct 0.25 of 64)", n.RopeDim)
				}
			}
			d, ff := tc.d, tc.ff
			perLayer := 4*d + d*3*d + 3*d + d*d + d + d*ff + ff + ff*d + d
			n := tc.layers*perLayer + tc.vocab*d + 2*d
			if tc.arch == "gpt2" {
				n += tc.ctx * d // learned positions; tied output
			} else {
				n += tc.vocab * d // untied output
			}
			if n != tc.params {
				t.Errorf("%d weights, want %d", n, tc.params)
			}
		})
	}
}

// TestCheckRunnableArch checks that the validator finds what llama.cpp's
// loader would refuse in gpt2 and gptneox files.
func TestCheckRunnableArch(t *testing.T) {
	for _, tc := range []struct {
		arch string
		edit func(kvs []KV) []KV
		drop string // a tensor to leave out
		want []string
	}{
		{"gptneox", func(kvs []KV) []KV { return deleteKV(kvs, "gptneox.use_parallel_residual") }, "",
			[]string{"missing metadata key gptneox.use_parallel_residual"}},
		{"gptneox", func(kvs []KV) []KV { return setKV(kvs, "gptneox.use_parallel_residual", uint32(1)) }, "",
			[]string{"use_parallel_residual has type uint32", "requires bool"}},
		{"gptneox", func(kvs []KV) []KV { return setKV(kvs, "gptneox.rope.dimension_count", uint32(5)) }, "",
			[]string{"rope.dimension_count 5 must be even"}},
		{"gpt2", func(kvs []KV) []KV { return deleteKV(kvs, "gpt2.attention.layer_norm_epsilon") }, "",
			[]string{"missing metadata key gpt2.attention.layer_norm_epsilon"}},
		{"gpt2", nil, "position_embd.weight", []string{"missing tensor position_embd.weight"}},
		{"gpt2", nil, "blk.1.attn_qkv.bias", []string{"missing tensor blk.1.attn_qkv.bias"}},
		{"gptneox", nil, "output.weight", []string{"missing tensor output.weight"}},
		{"gptneox", nil, "output_norm.bias", []string{"missing tensor output_norm.bias"}},
	} {
		t.Run(fmt.Sprintf("%s-%s", tc.arch, strings.Join(tc.want, "")), func(t *testing.T) {
			f := writeSynth(t, smallArchSpec(t, tc.arch, F32))
			edit := tc.edit
			if edit == nil {
				edit = func(kvs []KV) []KV { return kvs }
			}
			if tc.drop != "" {
				i := slices.IndexFunc(f.Tensors, func(ti TensorInfo) bool { return ti.Name == tc.drop })
				if i < 0 {
					t.Fatalf("no %s", tc.drop)
				}
				f.Tensors = slices.Delete(slices.Clone(f.Tensors), i, i+1)
			}
			g := rewrite(t, f, edit)
			err := g.CheckRunnable()
			if err == nil || !containsAll(err.Error(), tc.want...) {
				t.Errorf("CheckRunnable() = %v, want %q", err, tc.want)
			}
		})
	}
}
