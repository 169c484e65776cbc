package llamacpp

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/internal/benchutil"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

const lensPrompt = "Once upon a time, there was a little girl named Lily. She loved to play outside"

// lensModel is one model of TestUnembed and the tolerances of its W_U type.
type lensModel struct {
	name string
	// path returns the model file, writing it when synthetic.
	path func(t *testing.T) string
	// wantType is the type W_U must have, so the case tests what it says.
	wantType models.GGMLType
	// llama bounds the relative L2 error of LensNorm against llama.cpp's
	// logits, ref that against lens.Reference (all modes).
	llama, ref float64
}

// Tolerances: relative L2 error per row, worst row, measured on these
// models with lensPrompt and set just above.
//
// ggml's CPU mul_mat converts x to the dot-product type of W_U before
// multiplying: F32 stays F32, F16 rounds x to F16, Q8_0 and Q4_0 quantize
// x to Q8_0 (8 bits and one scale per block of 32) and K-quants to Q8_K
// (per block of 256). llama.cpp's output layer does the same conversion
// with the same kernels, so the lens gives its logits to the bit (measured
// 0 for every type; the bound leaves room for float32 summation-order
// changes should llama.cpp pick another kernel). lens.Reference keeps x in
// float64, so it sees that rounding of x.
const (
	tolLlama   = 1e-5   // lens vs llama.cpp, any type: measured 0
	tolRefF32  = 1e-6   // float32 summation order: measured 1.4e-7
	tolRefF16  = 5e-4   // x rounded to F16 (2⁻¹¹ relative): measured 3.4e-4
	tolRefQ8   = 8e-3   // x as Q8_0, synthetic residuals: measured 6.4e-3
	tolRefQ8TS = 1.5e-2 // x as Q8_0, TinyStories: residuals with outlier dimensions give coarse block scales: measured 1.2e-2
	tolRefQ6K  = 1.2e-2 // x as Q8_K: measured 9.1e-3
)

func sharedCase(name string, typ models.GGMLType, ref float64) lensModel {
	return lensModel{name: name, path: func(t *testing.T) string { return testmodels.Path(t, name) }, wantType: typ, llama: tolLlama, ref: ref}
}

func synthCase(name string, typ models.GGMLType, untied bool, ref float64) lensModel {
	return lensModel{name: name, wantType: typ, llama: tolLlama, ref: ref, path: func(t *testing.T) string {
		spec, err := models.SynthPreset("tiny")
		if err != nil {
			t.Fatal(err)
		}
		spec.Type, spec.Untied, spec.Seed = typ, untied, 7
		spec.VocabPath = testmodels.Path(t, testmodels.VocabLlamaSPM)
		p := filepath.Join(t.TempDir(), name+".gguf")
		if err := models.WriteSynthetic(p, spec); err != nil {
			t.Fatal(err)
		}
		return p
	}}
}

// q6kCase quantizes a synthetic F16 model with d_model 256 (one Q6_K
// super-block per row) and untied output.weight to pure Q6_K: the type of
// output.weight in most Q4_K_M files.
func q6kCase() lensModel {
	return lensModel{name: "synthetic-Q6_K-untied", wantType: models.Q6_K, llama: tolLlama, ref: tolRefQ6K, path: func(t *testing.T) string {
		spec := models.SynthSpec{NLayer: 2, DModel: 256, NHead: 4, DFF: 512, NCtx: 256, Type: models.F16, Untied: true, Seed: 3,
			VocabPath: testmodels.Path(t, testmodels.VocabLlamaSPM)}
		dir := t.TempDir()
		f16, q := filepath.Join(dir, "f16.gguf"), filepath.Join(dir, "q6k.gguf")
		if err := models.WriteSynthetic(f16, spec); err != nil {
			t.Fatal(err)
		}
		if err := Quantize(f16, q, QuantizeParams{Type: "Q6_K", Pure: true, Threads: 2}); err != nil {
			t.Fatal(err)
		}
		return q
	}}
}

var lensModels = []lensModel{
	sharedCase(testmodels.Stories260K, models.F32, tolRefF32),
	sharedCase(testmodels.TinyStories656KF16, models.F16, tolRefF16),
	sharedCase(testmodels.TinyStories656KQ8, models.Q8_0, tolRefQ8TS),
	synthCase("synthetic-F16-untied", models.F16, true, tolRefF16),
	synthCase("synthetic-Q8_0-untied", models.Q8_0, true, tolRefQ8),
	synthCase("synthetic-Q8_0-tied", models.Q8_0, false, tolRefQ8),
	synthCase("synthetic-Q4_0-tied", models.Q4_0, false, tolRefQ8),
	q6kCase(),
	archLensCase("gpt2", models.F32, false, tolRefF32),
	archLensCase("gpt2", models.Q8_0, true, tolRefQ8),
	archLensCase("gptneox", models.F32, true, tolRefF32),
	archLensCase("gptneox", models.F16, true, tolRefF16),
	archLensCase("qwen2", models.F32, true, tolRefF32),
	archLensCase("qwen2", models.Q8_0, false, tolRefQ8),
	archLensCase("qwen3", models.F32, false, tolRefF32),
	archLensCase("phi3", models.Q8_0, true, tolRefQ8),
	archLensCase("gemma2", models.F32, false, tolRefF32),
}

// lensRelErr returns max over rows of ‖a−b‖/‖b‖ for rows of width w.
func lensRelErr(a, b []float32, w int) float64 {
	worst := 0.0
	for r := 0; r < len(b)/w; r++ {
		var d, n float64
		for i := r * w; i < (r+1)*w; i++ {
			e := float64(a[i]) - float64(b[i])
			d += e * e
			n += float64(b[i]) * float64(b[i])
		}
		worst = max(worst, math.Sqrt(d)/math.Max(math.Sqrt(n), 1e-30))
	}
	return worst
}

// lensReference returns the plain Go lens of the model, decoding W_U with
// ggml's decoder where models cannot (K-quants).
func lensReference(t *testing.T, f *models.File) *lens.Reference {
	t.Helper()
	w, err := lens.FindWeights(f)
	if err != nil {
		t.Fatal(err)
	}
	if models.CanDequantize(w.UnembedType) {
		r, err := lens.NewReference(f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	gamma, err := f.ReadTensorFloat32(w.Norm)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := f.ReadTensor(w.Unembed)
	if err != nil {
		t.Fatal(err)
	}
	u, err := dequantize(w.UnembedType, raw, w.D*w.NVocab)
	if err != nil {
		t.Fatal(err)
	}
	return &lens.Reference{Gamma: gamma, W: u, D: w.D, NVocab: w.NVocab, Eps: w.Eps}
}

// openLens loads lm's model and its CPU lens with 2 threads; both are
// closed when the test ends.
func openLens(t *testing.T, lm lensModel) (*Model, *Unembedder) {
	t.Helper()
	m, err := LoadModel(lm.path(t), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	u, err := m.NewUnembedder(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return m, u
}

// TestUnembed checks the ggml lens on every W_U type: LensNorm of the last
// layer's resid_post must give llama.cpp's logits and its argmax at every
// position, and every mode must agree with lens.Reference on the rows of
// all layers (more than one 64-row chunk for stories260K).
func TestUnembed(t *testing.T) {
	for _, lm := range lensModels {
		t.Run(lm.name, func(t *testing.T) {
			m, u := openLens(t, lm)
			w := u.Weights()
			if w.UnembedType != lm.wantType || w.Tied != m.Info.TiedEmbeddings || u.Device() != "CPU" || !u.Mapped() {
				t.Fatalf("lens weights %+v on %s (mapped %v); want W_U of type %s, tied %v, mapped on the CPU",
					w, u.Device(), u.Mapped(), lm.wantType, m.Info.TiedEmbeddings)
			}
			if u.D() != m.NEmbd() || u.NVocab() != m.NVocab() {
				t.Fatalf("lens is %d→%d, model %d→%d", u.D(), u.NVocab(), m.NEmbd(), m.NVocab())
			}
			ids, err := m.Tokenize(lensPrompt, TokenizeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			nl, d, nv, np := m.NLayer(), m.NEmbd(), m.NVocab(), len(ids)
			hooks := []models.Hook{{Kind: models.Logits, Layer: -1}}
			for l := range nl {
				hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
			}
			c := runOne(t, m, ContextParams{Threads: 2}, [][]int32{ids}, hooks)[0]
			last := get(t, c, models.Hook{Kind: models.ResidPost, Layer: nl - 1}).Data
			logits := get(t, c, models.Hook{Kind: models.Logits, Layer: -1}).Data

			got, err := u.Unembed(nil, last, np, LensNorm)
			if err != nil {
				t.Fatal(err)
			}
			e := lensRelErr(got, logits, nv)
			t.Logf("norm vs llama.cpp logits: rel %.3g (bound %g)", e, lm.llama)
			if e > lm.llama {
				t.Errorf("lens of the last resid_post differs from llama.cpp's logits: rel %g > %g", e, lm.llama)
			}
			for p := range np {
				g, want := lens.TopK(got[p*nv:(p+1)*nv], 1)[0], lens.TopK(logits[p*nv:(p+1)*nv], 1)[0]
				if g.ID != want.ID {
					t.Errorf("position %d: lens top-1 is token %d (%g), llama.cpp's is %d (%g)", p, g.ID, g.Value, want.ID, want.Value)
				}
			}

			// all layers (the last for the big vocabularies: the reference is
			// slow)
			layers := nl
			if nv*d > 1<<20 {
				layers = 1
			}
			var rows []float32
			for l := nl - layers; l < nl; l++ {
				rows = append(rows, get(t, c, models.Hook{Kind: models.ResidPost, Layer: l}).Data...)
			}
			n := len(rows) / d
			ref := lensReference(t, m.File)
			for _, mode := range []LensMode{LensNorm, LensGamma, LensRaw} {
				got, err := u.Unembed(got, rows, n, mode)
				if err != nil {
					t.Fatal(err)
				}
				want := ref.Unembed(nil, rows, n, mode)
				e := lensRelErr(got, want, nv)
				t.Logf("%s vs reference over %d rows: rel %.3g (bound %g)", mode, n, e, lm.ref)
				if e > lm.ref {
					t.Errorf("%s: %d rows differ from lens.Reference: rel %g > %g", mode, n, e, lm.ref)
				}
			}
		})
	}
}

// TestUnembedCopied checks the path that copies W_U into the lens's own
// buffer (NoMmap, and always on a GPU) against the mapped one: same bytes,
// same kernel, so the same logits to the bit.
func TestUnembedCopied(t *testing.T) {
	m := loadShared(t, testmodels.TinyStories656KQ8)
	mapped, err := m.NewUnembedder(2)
	if err != nil {
		t.Fatal(err)
	}
	defer mapped.Close()
	copied, err := m.NewUnembedderWith(UnembedOptions{Threads: 2, NoMmap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	w := copied.Weights()
	tensorBytes, _ := m.File.Tensor(w.Unembed)
	// the copy holds W_U (aligned) on top of the same compute buffer
	if extra := copied.BufferBytes() - mapped.BufferBytes(); copied.Mapped() || extra < tensorBytes.Size || extra > tensorBytes.Size+4096 {
		t.Errorf("copied lens: mapped %v, %d bytes; mapped lens %d bytes; W_U is %d bytes",
			copied.Mapped(), copied.BufferBytes(), mapped.BufferBytes(), tensorBytes.Size)
	}
	x := make([]float32, 3*w.D)
	for i := range x {
		x[i] = float32(math.Sin(float64(i)))
	}
	for _, mode := range []LensMode{LensNorm, LensGamma, LensRaw} {
		a, err := mapped.Unembed(nil, x, 3, mode)
		if err != nil {
			t.Fatal(err)
		}
		b, err := copied.Unembed(nil, x, 3, mode)
		if err != nil {
			t.Fatal(err)
		}
		if e := lensRelErr(b, a, w.NVocab); e != 0 {
			t.Errorf("%s: copied W_U gives other logits than mapped: rel %g", mode, e)
		}
	}
}

// TestUnembedWritesOnlyDst pins the lens's contract with the caller's
// memory. On the CPU the graph writes the logits straight into dst (Go
// memory) where dst is 32-byte aligned, and copies them out otherwise: in
// both cases exactly n × n_vocab floats are written, nothing before dst or
// past its length (a write past it would land in other Go objects), and the
// logits equal those of a fresh dst. Row counts cross the 64-row chunk and
// the tile sizes of the repacked kernels; W_U types are Q8_0 (real
// TinyStories) and Q4_0 (synthetic, repacked where the CPU has the kernel).
func TestUnembedWritesOnlyDst(t *testing.T) {
	for _, lm := range lensModels {
		if lm.name != testmodels.TinyStories656KQ8 && lm.name != "synthetic-Q4_0-tied" {
			continue
		}
		t.Run(lm.name, func(t *testing.T) {
			_, u := openLens(t, lm)
			d, nv := u.D(), u.NVocab()
			const guard = 1024
			sentinel := float32(math.Inf(-1))
			for _, n := range []int{1, 3, 5, 65} {
				x := make([]float32, n*d)
				for i := range x {
					x[i] = float32(math.Sin(float64(i)*0.37 + float64(n)))
				}
				for _, mode := range []LensMode{LensNorm, LensGamma, LensRaw} {
					want, err := u.Unembed(nil, x, n, mode)
					if err != nil {
						t.Fatal(err)
					}
					// offsets 0 and 8 floats keep a large allocation's
					// alignment (the direct path), 1 breaks it (the copy)
					for _, off := range []int{0, 1, 8} {
						buf := make([]float32, off+n*nv+guard)
						for i := range buf {
							buf[i] = sentinel
						}
						got, err := u.Unembed(buf[off:off+n*nv:len(buf)], x, n, mode)
						if err != nil {
							t.Fatal(err)
						}
						if &got[0] != &buf[off] {
							t.Fatalf("n=%d %s off=%d: Unembed did not reuse dst", n, mode, off)
						}
						for i, v := range buf {
							if (i < off || i >= off+n*nv) && v != sentinel {
								t.Fatalf("n=%d %s off=%d: the lens wrote %g at float %d of dst (dst is [%d, %d))",
									n, mode, off, v, i-off, 0, n*nv)
							}
						}
						if e := lensRelErr(got, want, nv); e != 0 {
							t.Fatalf("n=%d %s off=%d: logits differ from those of a fresh dst: rel %g", n, mode, off, e)
						}
					}
				}
			}
		})
	}
}

// TestUnembedGPUFallback asks for a GPU: with a GPU backend loaded the lens
// runs there, and without one (as on CI) it falls back to the CPU.
func TestUnembedGPUFallback(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	u, err := m.NewUnembedderWith(UnembedOptions{GPU: true, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	gpu := false
	for _, d := range Devices() {
		gpu = gpu || d.Type == "GPU" || d.Type == "iGPU"
	}
	onCPU := u.Device() == "CPU"
	switch {
	case !gpu && !onCPU:
		t.Errorf("no GPU loaded, yet the lens runs on %s", u.Device())
	case gpu && onCPU:
		t.Errorf("a GPU is loaded, yet the lens runs on the CPU")
	case !onCPU && u.Mapped():
		t.Errorf("the lens runs on %s with W_U mapped from the file", u.Device())
	}
	t.Logf("lens device: %s (mapped %v)", u.Device(), u.Mapped())
	x := make([]float32, u.D())
	x[0] = 1
	got, err := u.Unembed(nil, x, 1, LensRaw)
	if err != nil {
		t.Fatal(err)
	}
	// W_U · e₀ is the first column of W_U: exact on the CPU (one nonzero
	// product), within TF32 rounding (2⁻¹¹) where a GPU multiplies in it
	tol := 0.0
	if !onCPU {
		tol = 1e-3
	}
	ref, err := lens.NewReference(m.File)
	if err != nil {
		t.Fatal(err)
	}
	for v := range u.NVocab() {
		if w := ref.W[v*ref.D]; math.Abs(float64(got[v]-w)) > tol*math.Abs(float64(w)) {
			t.Fatalf("logit %d = %g, want W_U[%d,0] = %g", v, got[v], v, w)
		}
	}
}

func writeGGUF(t *testing.T, tensors map[string]models.GGMLType) string {
	t.Helper()
	w := &models.Writer{}
	for _, kv := range []models.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "llama.embedding_length", Value: uint32(32)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
	} {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for name, typ := range tensors {
		dims := []uint64{32, 4}
		if strings.HasPrefix(name, "output_norm") {
			dims = dims[:1]
		}
		size, _ := typ.RowSize(dims[0])
		if len(dims) == 2 {
			size *= dims[1]
		}
		if err := w.AddTensor(name, typ, dims, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnembedErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tensors map[string]models.GGMLType
		want    string
	}{
		{"no output_norm", map[string]models.GGMLType{"output.weight": models.F32}, "no output_norm.weight"},
		{"I32 matrix", map[string]models.GGMLType{"output_norm.weight": models.F32, "output.weight": models.I32}, "cannot multiply by a i32 matrix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := models.Open(writeGGUF(t, tc.tensors))
			if err != nil {
				t.Fatal(err)
			}
			u, err := newUnembedder(f, UnembedOptions{Threads: 1})
			if err == nil {
				u.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want one containing %q", err, tc.want)
			}
		})
	}

	m, err := LoadModel(testmodels.Path(t, testmodels.Stories260K), ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := m.NewUnembedder(1)
	if err != nil {
		t.Fatal(err)
	}
	d := u.D()
	if _, err := u.Unembed(nil, make([]float32, 2*d+1), 2, LensNorm); err == nil || !strings.Contains(err.Error(), "not 2 rows") {
		t.Errorf("x of 2·d+1 values: %v", err)
	}
	if _, err := u.Unembed(nil, make([]float32, d), 1, LensMode(9)); err == nil {
		t.Error("invalid mode accepted")
	}
	if got, err := u.Unembed(nil, nil, 0, LensNorm); err != nil || len(got) != 0 {
		t.Errorf("no rows: %v, %v", got, err)
	}
	// the lens reads the file, not llama.cpp's model: it outlives Close
	m.Close()
	if _, err := m.NewUnembedder(1); err == nil {
		t.Error("NewUnembedder on a closed model")
	}
	if got, err := u.Unembed(nil, make([]float32, d), 1, LensNorm); err != nil || len(got) != u.NVocab() {
		t.Errorf("after the model's Close: %d logits, %v", len(got), err)
	}
	u.Close()
	u.Close() // idempotent
	if _, err := u.Unembed(nil, make([]float32, d), 1, LensNorm); err == nil {
		t.Error("Unembed after Close")
	}
	if mode, err := ParseLensMode("gamma"); err != nil || mode != LensGamma {
		t.Errorf("ParseLensMode(gamma) = %v, %v", mode, err)
	}
}

// lensBenchModel writes the benchmark model: 8 layers, d_model 512, the
// 32000-token llama vocabulary, Q8_0 weights, untied.
func lensBenchModel(b *testing.B) (*Model, []int32) {
	b.Helper()
	spec := lensBenchSpec(b)
	p := filepath.Join(b.TempDir(), "bench.gguf")
	if err := models.WriteSynthetic(p, spec); err != nil {
		b.Fatal(err)
	}
	m := loadBench(b, p)
	return m, lensBenchIDs(m.NVocab())
}

// loadBench loads path for a benchmark, closed when it ends.
func loadBench(b *testing.B, path string) *Model {
	b.Helper()
	m, err := LoadModel(path, ModelParams{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// lensBenchIDs returns the benchPrompt tokens of the lens benchmarks, spread
// over ids 100 to nVocab-1.
func lensBenchIDs(nVocab int) []int32 {
	ids := make([]int32, benchPrompt)
	for i := range ids {
		ids[i] = int32(100 + 37*i%(nVocab-100))
	}
	return ids
}

// lensBenchSpec is the model of lensBenchModel.
func lensBenchSpec(b *testing.B) models.SynthSpec {
	return models.SynthSpec{NLayer: 8, DModel: 512, NHead: 8, DFF: 1408, NCtx: 256, Type: models.Q8_0, Untied: true, Seed: 1,
		VocabPath: testmodels.Path(b, testmodels.VocabLlamaSPM)}
}

// lensBenchRows returns the rows the lens benchmarks unembed: resid_post of
// every layer at the last benchPositions positions of ids.
func lensBenchRows(b *testing.B, m *Model, ids []int32) []float32 {
	b.Helper()
	var hooks []models.Hook
	for l := range m.NLayer() {
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
	}
	c := runOne(b, m, ContextParams{}, [][]int32{ids}, hooks)[0]
	var rows []float32
	for _, h := range hooks {
		a := get(b, c, h)
		for p := len(ids) - benchPositions; p < len(ids); p++ {
			rows = append(rows, a.Row(p)...)
		}
	}
	return rows
}

// benchPrompt is the prompt length of BenchmarkDecode; BenchmarkUnembed
// lenses benchPositions of its positions at every layer.
const (
	benchPrompt    = 64
	benchPositions = 4
)

// BenchmarkUnembed is the logit lens of every layer's resid_post at
// benchPositions positions of a benchPrompt-token prompt; compare with
// BenchmarkDecode, one forward pass of that prompt.
func BenchmarkUnembed(b *testing.B) {
	m, ids := lensBenchModel(b)
	rows := lensBenchRows(b, m, ids)
	n := len(rows) / m.NEmbd()
	u, err := m.NewUnembedder(0)
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	var out []float32
	for b.Loop() {
		if out, err = u.Unembed(out, rows, n, LensNorm); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "rows/op")
}

// BenchmarkDecode is one forward pass of the benchPrompt-token prompt of
// BenchmarkUnembed, capturing nothing.
func BenchmarkDecode(b *testing.B) {
	m, ids := lensBenchModel(b)
	ctx, err := m.NewContext(ContextParams{})
	if err != nil {
		b.Fatal(err)
	}
	defer ctx.Close()
	for b.Loop() {
		if _, err := ctx.Run([][]int32{ids}, RunOptions{NoLogits: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLensRatio reports lens/decode-ratio, the logit lens compare
// computes ÷ the decode compare runs: the lens of resid_post at every layer
// but the last at benchPositions positions (in norm mode the last layer's
// lens is the model's own logits, which compare takes from the run), and a
// decode of the benchPrompt tokens with logits at those positions. It also
// reports lens-all/decode-ratio, the lens of every layer (the last one
// computed too) ÷ the same decode, and the CPU-time forms of both.
func BenchmarkLensRatio(b *testing.B) {
	m, ids := lensBenchModel(b)
	benchLensRatio(b, m, ids, "lens")
	spec := lensBenchSpec(b)
	spec.VocabSize = m.NVocab()
	lensMACs := float64((spec.NLayer-1)*benchPositions) * float64(spec.VocabSize) * float64(spec.DModel)
	b.ReportMetric(lensMACs/decodeMACs(spec, len(ids), benchPositions), "lens/decode-macs-ratio")
}

// BenchmarkLensVocab256k is BenchmarkLensRatio on a model with Gemma 3's
// vocabulary size: the gemma3-1b-shape preset (26 layers, d_model 1152,
// Llama 2's vocabulary padded to 262144 tokens, Q8_0, tied), where one lens
// row (262144 × 1152 multiply-adds) costs 0.43 of a token's pass through
// all 26 layers. It reports lens-256k/decode-ratio and the arithmetic
// floor of that ratio, lens-256k/decode-macs-ratio: the multiply-adds of
// the lens ÷ those of the decode (matrix products and attention), which no
// implementation of the same lens can beat by more than the two sides'
// kernels differ. The model is written once (1.1 GB) into
// $TMPDIR/lldiff-bench.
func BenchmarkLensVocab256k(b *testing.B) {
	const preset = "gemma3-1b-shape"
	path, err := benchmodels.Synthetic(preset, models.Q8_0)
	if err != nil {
		b.Fatal(err)
	}
	m := loadBench(b, path)
	ids := lensBenchIDs(32000) // real tokens, not the padding
	spec, err := models.SynthPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	if m.NVocab() != spec.VocabSize {
		b.Fatalf("%s has %d tokens, want %d", path, m.NVocab(), spec.VocabSize)
	}
	benchLensRatio(b, m, ids, "lens-256k")
	rows := float64((spec.NLayer - 1) * benchPositions)
	lensMACs := rows * float64(spec.VocabSize) * float64(spec.DModel)
	b.ReportMetric(lensMACs/decodeMACs(spec, len(ids), benchPositions), "lens-256k/decode-macs-ratio")
}

// decodeMACs counts the multiply-adds of decoding t tokens of a model of
// spec's shape with logits at logitRows positions: per token and layer the
// Q, K, V and O projections and the three MLP matrices, attention's QKᵀ and
// AV over the tokens so far (t is below every sliding window here), and
// the output matrix for logitRows rows. Norms, RoPE and softmax are left
// out (linear in d_model, not in the matrices).
func decodeMACs(spec models.SynthSpec, t, logitRows int) float64 {
	d, ff, nl, nv := float64(spec.DModel), float64(spec.DFF), float64(spec.NLayer), float64(spec.VocabSize)
	hd := spec.HeadDim
	if hd == 0 {
		hd = spec.DModel / spec.NHead
	}
	kvHeads := spec.NHeadKV
	if kvHeads == 0 {
		kvHeads = spec.NHead
	}
	q, kv := float64(spec.NHead*hd), float64(kvHeads*hd)
	perToken := d*(q+2*kv) + q*d + 3*d*ff
	attn := 0.0
	for i := 1; i <= t; i++ {
		attn += 2 * float64(i) * q
	}
	return nl*(float64(t)*perToken+attn) + float64(logitRows)*nv*d
}

// benchLensRatio times, alternately on m, the lens of compare (resid_post
// rows of every layer but the last at benchPositions positions of ids), the
// lens of every layer, and a decode of ids with logits at those positions,
// and reports their ratios under the metric names prefix/decode-ratio and
// prefix-all/decode-ratio, and their CPU-time forms.
func benchLensRatio(b *testing.B, m *Model, ids []int32, prefix string) {
	rows := lensBenchRows(b, m, ids)
	n := len(rows) / m.NEmbd()
	nCompare := n - benchPositions // compare's rows: the last layer's come from the logits
	threads := benchThreadsEnv()
	u, err := m.NewUnembedder(threads)
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	ctx, err := m.NewContext(ContextParams{NoCallback: true, Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	defer ctx.Close()
	pos := make([]int, benchPositions)
	for i := range pos {
		pos[i] = len(ids) - benchPositions + i
	}
	var out []float32
	// wall times per round (medians of per-round ratios: see benchutil.MedianRatio)
	// and CPU times summed
	var tLens, tAll, tDec1, tDec2 []time.Duration
	var cLens, cAll, cDec time.Duration
	decode := func(ts *[]time.Duration) {
		c0, t0 := cpuTime(), time.Now()
		if _, err := ctx.RunRows([][]int32{ids}, [][]int{pos}, nil); err != nil {
			b.Fatal(err)
		}
		*ts = append(*ts, time.Since(t0))
		cDec += cpuTime() - c0
	}
	unembed := func(k int, ts *[]time.Duration, c *time.Duration) {
		c0, t0 := cpuTime(), time.Now()
		if out, err = u.Unembed(out, rows[:k*m.NEmbd()], k, LensNorm); err != nil {
			b.Fatal(err)
		}
		*ts = append(*ts, time.Since(t0))
		*c += cpuTime() - c0
	}
	// each lens follows a decode, as in compare: the decode has pushed
	// W_U out of the caches, and the lens's threads have slept
	benchutil.Rounds(b, benchutil.MinRounds, func() {
		decode(&tDec1)
		unembed(nCompare, &tLens, &cLens)
		decode(&tDec2)
		unembed(n, &tAll, &cAll)
	})
	b.ReportMetric(float64(nCompare), "rows/op")
	b.ReportMetric(benchutil.MedianRatio(tLens, tDec1), prefix+"/decode-ratio")
	b.ReportMetric(benchutil.MedianRatio(tAll, tDec2), prefix+"-all/decode-ratio")
	// CPU time, for LLDIFF_BENCH_THREADS=1 on a loaded machine: one
	// thread's work does not depend on the other processes (spinning
	// workers would count with more threads)
	b.ReportMetric(2*cLens.Seconds()/cDec.Seconds(), prefix+"/decode-cpu")
	b.ReportMetric(2*cAll.Seconds()/cDec.Seconds(), prefix+"-all/decode-cpu")
}

// TestUnembedShared checks that a model hands the same lens to callers with
// the same options, that each Unembedder's Close is its own, and that the
// lens is freed only when the model is closed and the last Unembedder with
// it: the logits stay the same throughout.
func TestUnembedShared(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K) // closed below too: a second Close does nothing
	u1, err := m.NewUnembedder(2)
	if err != nil {
		t.Fatal(err)
	}
	u2, err := m.NewUnembedderWith(UnembedOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	u3, err := m.NewUnembedderWith(UnembedOptions{Threads: 2, NoMmap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer u3.Close()
	if u1.l != u2.l {
		t.Errorf("two lenses with the same options are not shared")
	}
	if u3.l == u1.l {
		t.Errorf("a lens with NoMmap shares the mapped lens")
	}
	d := u1.D()
	x := make([]float32, 2*d)
	for i := range x {
		x[i] = float32(math.Cos(float64(i) / 3))
	}
	want, err := u1.Unembed(nil, x, 2, LensNorm)
	if err != nil {
		t.Fatal(err)
	}
	same := func(who string, u *Unembedder) {
		t.Helper()
		got, err := u.Unembed(nil, x, 2, LensNorm)
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if e := lensRelErr(got, want, u.NVocab()); e != 0 {
			t.Errorf("%s: other logits than the first lens: rel %g", who, e)
		}
	}
	u1.Close()
	u1.Close() // a second Close must not drop a second reference
	if _, err := u1.Unembed(nil, x, 2, LensNorm); err == nil {
		t.Errorf("a closed Unembedder still computes")
	}
	same("the other Unembedder after the first closed", u2)
	l := u2.l
	m.Close()
	if l.c == nil {
		t.Fatalf("closing the model freed a lens still open")
	}
	same("the Unembedder after the model closed", u2)
	if _, err := m.NewUnembedder(2); err == nil {
		t.Errorf("a closed model handed out a lens")
	}
	u2.Close()
	if l.c != nil || l.refs != 0 {
		t.Errorf("the last Close left the lens allocated (%d references)", l.refs)
	}

	// a lens nobody holds is kept by the model for the next caller and
	// freed with the model
	m2 := loadShared(t, testmodels.Stories260K)
	u4, err := m2.NewUnembedder(2)
	if err != nil {
		t.Fatal(err)
	}
	l4 := u4.l
	u4.Close()
	u5, err := m2.NewUnembedder(2)
	if err != nil {
		t.Fatal(err)
	}
	if u5.l != l4 || l4.c == nil {
		t.Errorf("the model did not keep its lens for the next caller")
	}
	u5.Close()
	m2.Close()
	if l4.c != nil {
		t.Errorf("closing the model left its idle lens allocated")
	}
}
