package llamacpp

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// benchNGL is the -ngl of the benchmarks: $LLDIFF_BENCH_NGL (scripts/gpu-check.sh
// sets 999), else 0 (CPU).
func benchNGL() int {
	n, _ := strconv.Atoi(os.Getenv("LLDIFF_BENCH_NGL"))
	return n
}

// benchPreset is the synthetic shape of the capture benchmark:
// $LLDIFF_BENCH_PRESET (gpu-check.sh: llama2-7b), else bench-cpu.
func benchPreset() string {
	if p := os.Getenv("LLDIFF_BENCH_PRESET"); p != "" {
		return p
	}
	return "bench-cpu"
}

func hasGPU() (string, bool) {
	for _, d := range Devices() {
		if d.Type == "GPU" || d.Type == "iGPU" {
			return d.Name + " (" + d.Description + ")", true
		}
	}
	return "", false
}

// Bounds of CPU vs GPU agreement (relative L2 per position, worst over
// positions and layers), F32 KV cache on both sides. Not yet measured on a
// GPU (no device was lent when they were written): they are first
// estimates, and the test logs every measured value so that the first run
// on a GPU (scripts/gpu-check.sh) can set them to 1.3× measured, as the
// CPU agreement bounds are. F32 weights: cuBLAS sums in another order
// (about 1e-6 relative per layer on the CPU side). Quantized weights: the
// CUDA kernels quantize activations to Q8_1 where the CPU uses Q8_0/Q8_K,
// about the CPU-vs-reference difference (2e-2, agreement_kquant_test.go).
const (
	gpuBoundF32   = 1e-3
	gpuBoundQuant = 4e-2
)

// TestGPUAgreement captures every hook at every layer and position with
// all layers on the GPU and on the CPU, and compares them; it also checks
// the GPU run against the pure-Go reference for the F32 model. It skips
// when no GPU backend is loaded, and fails then if LLDIFF_REQUIRE_GPU=1
// (scripts/gpu-check.sh).
func TestGPUAgreement(t *testing.T) {
	name, ok := hasGPU()
	// LLDIFF_GPU_TEST_ON_CPU=1 runs the comparison with both sides on the
	// CPU (every difference must then be 0): a check of this test itself.
	onCPU := os.Getenv("LLDIFF_GPU_TEST_ON_CPU") == "1"
	if !ok && !onCPU {
		if os.Getenv("LLDIFF_REQUIRE_GPU") == "1" {
			t.Fatalf("LLDIFF_REQUIRE_GPU=1 but no GPU device is loaded (backend dirs %v): run make cuda, or set LLDIFF_BACKEND_DIR", BackendDirs())
		}
		t.Skip("no GPU backend loaded")
	}
	t.Logf("GPU: %s", name)
	tiny := func(typ models.GGMLType) func(t *testing.T) string {
		return func(t *testing.T) string {
			spec, err := models.SynthPreset("small")
			if err != nil {
				t.Fatal(err)
			}
			spec.Type, spec.Seed = typ, 9
			p := filepath.Join(t.TempDir(), "small-"+typ.String()+".gguf")
			if err := models.WriteSynthetic(p, spec); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	for _, c := range []struct {
		name  string
		path  func(t *testing.T) string
		bound float64
		ref   bool
	}{
		{"stories260K-F32", func(t *testing.T) string { return testmodels.Path(t, testmodels.Stories260K) }, gpuBoundF32, true},
		{"TinyStories-Q8_0", func(t *testing.T) string { return testmodels.Path(t, testmodels.TinyStories656KQ8) }, gpuBoundQuant, false},
		{"synthetic-small-Q4_0", tiny(models.Q4_0), gpuBoundQuant, false},
		{"synthetic-small-F16", tiny(models.F16), gpuBoundF32, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := c.path(t)
			cpu, err := LoadModel(path, ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer cpu.Close()
			gpu, err := LoadModel(path, ModelParams{GPULayers: 999})
			if err != nil {
				t.Fatal(err)
			}
			defer gpu.Close()
			if gpu.GPULayers() == 0 && !onCPU {
				t.Fatal("the model loaded with -ngl 999 has no layer on the GPU")
			}
			toks, err := cpu.Tokenize(" Once upon a time, there was a little girl who liked to play", TokenizeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			hooks := slices.DeleteFunc(allHooks(cpu.NLayer()), func(h models.Hook) bool { return !cpu.Hooks.Has(h.Kind) })
			p := ContextParams{KVType: "f32"}
			a := runOne(t, cpu, p, [][]int32{toks}, hooks)[0]
			b := runOne(t, gpu, p, [][]int32{toks}, hooks)[0]
			var rr *reference.Result
			if c.ref {
				ref, err := reference.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				if rr, err = ref.Run(toks); err != nil {
					t.Fatal(err)
				}
			}
			worst := map[models.Kind]float64{}
			worstRef := map[models.Kind]float64{}
			for _, h := range hooks {
				x, err := a.Get(h.Name())
				if err != nil {
					t.Fatal(err)
				}
				y, err := b.Get(h.Name())
				if err != nil {
					t.Fatal(err)
				}
				for pos := range x.Rows() {
					worst[h.Kind] = max(worst[h.Kind], reference.RelL2(y.Row(pos), x.Row(pos)))
				}
				if rr != nil {
					want, _ := rr.Get(h.Name())
					for pos := range want {
						worstRef[h.Kind] = max(worstRef[h.Kind], reference.RelL2(y.Row(pos), want[pos]))
					}
				}
			}
			var sb strings.Builder
			for _, k := range allKinds {
				if v, ok := worst[k]; ok {
					fmt.Fprintf(&sb, "\n\t%-10s GPU vs CPU %.3g", k, v)
					if rr != nil {
						fmt.Fprintf(&sb, ", GPU vs reference %.3g", worstRef[k])
					}
					if onCPU && (v != 0 || worstRef[k] > c.bound) {
						t.Errorf("%s: CPU vs CPU %.3g (want 0), vs reference %.3g", k, v, worstRef[k])
					}
					if v > c.bound {
						t.Errorf("%s: GPU vs CPU relative L2 %.3g, bound %.2g", k, v, c.bound)
					}
					if rr != nil && worstRef[k] > c.bound {
						t.Errorf("%s: GPU vs reference relative L2 %.3g, bound %.2g", k, worstRef[k], c.bound)
					}
				}
			}
			t.Logf("%s, F32 KV, worst relative L2 over %d positions:%s", c.name, len(toks), sb.String())
		})
	}
}
