package llamacpp

import (
	"encoding/binary"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// archLensCase is a TestUnembed case on a synthetic gpt2 or gptneox model
// (final LayerNorm with weight and bias; gpt2 tied unless untied), or
// qwen2, qwen3, phi3 or gemma2 (final RMSNorm, tied unless untied; gemma2
// always tied, with its final soft-cap 30): 2 layers, d_model 64, the
// architecture's vocabulary (for qwen2 and qwen3, GPT-2's; for phi3 and
// gemma2, Llama 2's).
func archLensCase(arch string, typ models.GGMLType, untied bool, ref float64) lensModel {
	name := fmt.Sprintf("synthetic-%s-%s", arch, typ)
	if untied && arch == "gpt2" {
		name += "-untied"
	}
	return lensModel{name: name, wantType: typ, llama: tolLlama, ref: ref, path: func(t *testing.T) string {
		spec := models.SynthSpec{Arch: arch, NLayer: 2, DModel: 64, NHead: 4, DFF: 128, NCtx: 128, Type: typ, Untied: untied, Seed: 9,
			VocabPath: testmodels.Path(t, models.SynthVocab(arch))}
		p := filepath.Join(t.TempDir(), name+".gguf")
		if err := models.WriteSynthetic(p, spec); err != nil {
			t.Fatal(err)
		}
		return p
	}}
}

// TestUnembedLayerNorm checks what TestUnembed cannot see on its own for a
// final LayerNorm: the ggml lens in LensNorm mode gives llama.cpp's
// ln_final (through the identity matrix it would be ln_final itself, so
// the lens uses γ, β and the centring), and LensGamma is linear in x, the
// lens of a difference being the difference of the lenses.
func TestUnembedLayerNorm(t *testing.T) {
	for _, arch := range []string{"gpt2", "gptneox"} {
		t.Run(arch, func(t *testing.T) {
			m, err := LoadModel(archLensCase(arch, models.F32, false, 0).path(t), ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			u, err := m.NewUnembedder(1)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if w := u.Weights(); !w.LayerNorm || w.NormBias != lens.NormBiasTensor || w.OutputBias != "" {
				t.Fatalf("weights %+v", w)
			}
			ids := prompt{"s", storyText, 8}.tokens(t, m)
			nl, d, nv := m.NLayer(), m.NEmbd(), m.NVocab()
			c := runOne(t, m, ContextParams{Threads: 1, KVType: "f32"}, [][]int32{ids},
				[]models.Hook{{Kind: models.ResidPost, Layer: nl - 1}, {Kind: models.ResidPost, Layer: 0}, {Kind: models.LnFinal, Layer: -1}})[0]
			last := get(t, c, models.Hook{Kind: models.ResidPost, Layer: nl - 1}).Data
			first := get(t, c, models.Hook{Kind: models.ResidPost, Layer: 0}).Data
			lnFinal := get(t, c, models.Hook{Kind: models.LnFinal, Layer: -1}).Data

			// ln_final = LayerNorm(resid_post) with γ and β: lens.Reference's
			// normalisation, read off through W_U against the lens's own
			ref, err := lens.NewReference(m.File)
			if err != nil {
				t.Fatal(err)
			}
			viaLnFinal := (&lens.Reference{Gamma: ones(d), W: ref.W, D: d, NVocab: nv}).Unembed(nil, lnFinal, len(ids), lens.Raw)
			got, err := u.Unembed(nil, last, len(ids), LensNorm)
			if err != nil {
				t.Fatal(err)
			}
			// F32 both ways: summation order only
			if e := lensRelErr(got, viaLnFinal, nv); e > 1e-5 {
				t.Errorf("lens of the last resid_post vs W_U · ln_final: rel %g > 1e-5", e)
			}

			// LensGamma is linear: lens(a) − lens(b) = lens(a − b)
			diff := make([]float32, len(last))
			for i := range diff {
				diff[i] = last[i] - first[i]
			}
			la, _ := u.Unembed(nil, last, len(ids), LensGamma)
			lb, _ := u.Unembed(nil, first, len(ids), LensGamma)
			ld, _ := u.Unembed(nil, diff, len(ids), LensGamma)
			for i := range la {
				la[i] -= lb[i]
			}
			if e := lensRelErr(la, ld, nv); e > 1e-5 {
				t.Errorf("gamma lens is not linear: rel %g", e)
			}
			// and it centres: a constant added to x changes nothing
			shifted := make([]float32, len(first))
			for i := range shifted {
				shifted[i] = first[i] + 3
			}
			ls, _ := u.Unembed(nil, shifted, len(ids), LensGamma)
			if e := lensRelErr(ls, lb, nv); e > 1e-5 {
				t.Errorf("gamma lens of x + 3 differs from that of x: rel %g", e)
			}
			// x itself is not changed by the centring
			if math.Abs(float64(shifted[0]-first[0]-3)) > 1e-6 {
				t.Error("Unembed changed its input")
			}
		})
	}
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// TestUnembedOutputBias checks the output bias of the ggml lens against
// lens.Reference. No architecture llama.cpp runs for lldiff has one, so the
// file is a synthetic gpt2 with output.bias added: the lens reads only the
// file, never llama.cpp's model.
func TestUnembedOutputBias(t *testing.T) {
	f, err := models.Open(archLensCase("gpt2", models.F32, true, 0).path(t))
	if err != nil {
		t.Fatal(err)
	}
	w := copyToWriter(t, f)
	in, _ := f.Info()
	bias := make([]float32, in.NVocab)
	raw := make([]byte, 4*len(bias))
	for i := range bias {
		bias[i] = float32(math.Sin(float64(i))) * 3
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(bias[i]))
	}
	if err := w.AddTensor(lens.OutputBiasTensor, models.F32, []uint64{uint64(len(bias))}, raw); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bias.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	g, err := models.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	u, err := newUnembedder(g, UnembedOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if u.Weights().OutputBias != lens.OutputBiasTensor {
		t.Fatalf("weights %+v", u.Weights())
	}
	ref, err := lens.NewReference(g)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 3*u.D())
	for i := range x {
		x[i] = float32(math.Cos(float64(i) * 0.7))
	}
	for _, mode := range []LensMode{LensNorm, LensGamma, LensRaw} {
		got, err := u.Unembed(nil, x, 3, mode)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.Unembed(nil, x, 3, mode)
		// F32 W_U: summation order only (see tolRefF32)
		if e := lensRelErr(got, want, u.NVocab()); e > tolRefF32 {
			t.Errorf("%s: rel %g > %g", mode, e, tolRefF32)
		}
		if mode == LensNorm {
			// and the bias is there: without it the logits move by ‖bias‖
			noBias := (&lens.Reference{Gamma: ref.Gamma, W: ref.W, D: ref.D, NVocab: ref.NVocab, Eps: ref.Eps,
				LayerNorm: true, Beta: ref.Beta}).Unembed(nil, x, 3, mode)
			if e := lensRelErr(got, noBias, u.NVocab()); e < 0.01 {
				t.Errorf("the output bias changed the logits by only rel %g", e)
			}
		}
	}
}

// copyToWriter returns a Writer holding every metadata entry and tensor of
// f, for a test that adds to a real file.
func copyToWriter(t *testing.T, f *models.File) *models.Writer {
	t.Helper()
	return writerWith(t, f, f.KVs)
}

// writerWith returns a Writer holding the metadata kvs and every tensor of
// f.
func writerWith(t *testing.T, f *models.File, kvs []models.KV) *models.Writer {
	t.Helper()
	w := &models.Writer{}
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		b, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
			t.Fatal(err)
		}
	}
	return w
}
