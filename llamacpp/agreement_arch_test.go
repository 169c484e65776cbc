package llamacpp

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The tests in this file are the agreement tests of agreement_test.go for
// the LayerNorm architectures gpt2 (GPT-2) and gptneox (Pythia), on small
// synthetic models with the real GPT-2 and GPT-NeoX vocabularies: every
// hook the architecture has, at every layer and position, against
// models/reference, and the argmax token at every position.
//
// Bounds are 1.3 to 1.5 times the worst relative L2 error measured over
// the 3-layer shape below (d_model 64, 4 heads of 16, d_ff 256) with seeds
// 1 to 6 and 11, the four F32 variants of TestAgreementArch, and the three
// prompts; the measurements are written beside the values.

// lnF32Bounds are for F32 weights and an F32 KV cache. Every hook computed
// before the first GELU agrees as for llama (measured worst 4.3e-7; see
// preGELUBound). The GELU breaks the exactness: ggml's CPU backend
// evaluates it through a table (GGML_GELU_FP16), rounding the input to half
// precision and returning a half-precision value, and the reference does
// the same; but where llama.cpp's float32 matrix product and the
// reference's, which sum in other orders and differ in the last bits, put a
// pre-activation on either side of a half-precision rounding boundary, that
// hidden unit differs by one half-precision step (2^-11 relative, 2^-9
// absolute near 3). In these small models one such unit in 256 moves
// mlp_out by up to 3e-4 relative, and later hooks inherit it. Evaluating
// GELU in float32 instead (as GPU backends do) gives errors 2 to 3 times
// larger at every position, so the reference follows the table.
var lnF32Bounds = bounds{
	models.ResidPre:  2.6e-4, // measured 1.74e-4
	models.Z:         1.3e-4, // measured 8.12e-5
	models.AttnOut:   1.1e-4, // measured 6.89e-5
	models.ResidMid:  2.6e-4, // measured 1.69e-4
	models.MLPOut:    5.0e-4, // measured 3.27e-4
	models.ResidPost: 2.6e-4, // measured 1.74e-4
	models.LnFinal:   2.6e-4, // measured 1.70e-4
	models.Logits:    2.6e-4, // measured 1.69e-4
}

// preGELUBound bounds, with F32 weights, every hook computed before the
// first GELU: resid_pre, z, attn_out and resid_mid of layer 0. They are
// computed without any table, so the llama bound holds (measured 4.3e-7).
const preGELUBound = 1e-4

// lnF16Bounds are for F16 weights: ggml rounds each matrix product's input
// activations to F16, as for llama (see f16Bounds).
var lnF16Bounds = bounds{
	models.ResidPre:  7.0e-4, // measured 5.39e-4
	models.Z:         1.1e-3, // measured 8.01e-4
	models.AttnOut:   1.2e-3, // measured 8.67e-4
	models.ResidMid:  7.1e-4, // measured 5.42e-4
	models.MLPOut:    1.2e-3, // measured 8.73e-4
	models.ResidPost: 7.9e-4, // measured 6.03e-4
	models.LnFinal:   7.6e-4, // measured 5.79e-4
	models.Logits:    8.4e-4, // measured 6.45e-4
}

// lnQ8Bounds are for Q8_0 weights: ggml quantizes each matrix product's
// input activations to Q8_0, as for llama (see q8Bounds).
var lnQ8Bounds = bounds{
	models.ResidPre:  0.017, // measured 0.0128
	models.Z:         0.022, // measured 0.0164
	models.AttnOut:   0.025, // measured 0.0192
	models.ResidMid:  0.015, // measured 0.0114
	models.MLPOut:    0.028, // measured 0.0211
	models.ResidPost: 0.017, // measured 0.0129
	models.LnFinal:   0.017, // measured 0.0127
	models.Logits:    0.020, // measured 0.0147
}

// promptFirst is the first token of the story alone: the GPT-2 and NeoX
// tokenizers add no BOS, so it stands in for promptBOS.
var promptFirst = prompt{"first", storyText, 1}

// archCase is one synthetic gpt2 or gptneox model.
type archCase struct {
	name       string
	arch       string
	nHeadKV    int // 0: as many as query heads
	untied     bool
	sequential bool // gptneox.use_parallel_residual = false
	ropeDim    int  // gptneox: 0 for Pythia's quarter of the head
	typ        models.GGMLType
	bound      bounds
	// logitAbs bounds the largest absolute logit error and allows argmax
	// near-ties (see agreementCase). The tied gpt2 logits are larger
	// (token_embd.weight has σ 1, output.weight σ 1/sqrt(d_model)), and so
	// are their errors.
	logitAbs float64
}

// writeArchModel writes the synthetic model of c: 3 layers, d_model 64 in
// 4 heads of 16, d_ff 256, 128 positions, the architecture's vocabulary,
// seed 11.
func writeArchModel(t *testing.T, dir string, c archCase) string {
	t.Helper()
	spec := models.SynthSpec{
		Arch: c.arch, NLayer: 3, DModel: 64, NHead: 4, NHeadKV: c.nHeadKV, DFF: 256, NCtx: 128,
		Type: c.typ, Untied: c.untied, SequentialResidual: c.sequential, RopeDim: c.ropeDim, Seed: 11,
		VocabPath: testmodels.Path(t, models.SynthVocab(c.arch)),
	}
	path := filepath.Join(dir, c.name+".gguf")
	if err := models.WriteSynthetic(path, spec); err != nil {
		t.Fatal(err)
	}
	return path
}

var archCases = []archCase{
	{name: "gpt2-F32-tied", arch: "gpt2", typ: models.F32, bound: lnF32Bounds, logitAbs: 0.0075},                                  // measured 0.00475
	{name: "gpt2-F32-untied-kv2", arch: "gpt2", nHeadKV: 2, untied: true, typ: models.F32, bound: lnF32Bounds, logitAbs: 0.00095}, // measured 0.000627
	{name: "pythia-F32", arch: "gptneox", typ: models.F32, bound: lnF32Bounds, logitAbs: 0.001},                                   // measured 0.000671
	{name: "gptneox-F32-sequential-fullrope-kv2", arch: "gptneox", nHeadKV: 2, sequential: true, ropeDim: 16, typ: models.F32,
		bound: lnF32Bounds, logitAbs: 0.00066}, // measured 0.000439
	{name: "gpt2-F16", arch: "gpt2", typ: models.F16, bound: lnF16Bounds, logitAbs: 0.031},       // measured 0.0233
	{name: "pythia-F16", arch: "gptneox", typ: models.F16, bound: lnF16Bounds, logitAbs: 0.0040}, // measured 0.00303
	{name: "gpt2-Q8_0", arch: "gpt2", typ: models.Q8_0, bound: lnQ8Bounds, logitAbs: 0.69},       // measured 0.526; near-ties at 4 positions
	{name: "pythia-Q8_0", arch: "gptneox", typ: models.Q8_0, bound: lnQ8Bounds, logitAbs: 0.086}, // measured 0.0656
}

func TestAgreementArch(t *testing.T) {
	dir := t.TempDir()
	for _, c := range archCases {
		t.Run(c.name, func(t *testing.T) {
			path := writeArchModel(t, dir, c)
			runAgreement(t, agreementCase{
				path:     path,
				prompts:  []prompt{promptFirst, promptSentence, prompt40},
				bound:    c.bound,
				logitAbs: c.logitAbs,
			})
			if c.typ == models.F32 {
				checkPreGELU(t, path)
			}
		})
	}
}

// checkPreGELU checks the hooks of layer 0 that no GELU precedes against
// preGELUBound.
func checkPreGELU(t *testing.T, path string) {
	t.Helper()
	m, ref := loadWithReference(t, path, path)
	n := 0
	for _, d := range compareRun(t, m, ref, prompt40.tokens(t, m)) {
		if d.hook.Layer != 0 || d.hook.Kind == models.MLPOut || d.hook.Kind == models.ResidPost {
			continue
		}
		n++
		if err := reference.Compare(d.hook.Name(), d.got, d.want, preGELUBound); err != nil {
			t.Errorf("before the first GELU: %v", err)
		}
	}
	if n < 3 {
		t.Errorf("only %d hooks before the first GELU", n)
	}
}

// TestAgreementArchDetectsChangedBias shows that the comparison can fail
// and that attn_out is the node after the attention output's bias: one
// value of blk.1.attn_output.bias is changed by 1 (ten times the biases' σ)
// in the file llama.cpp runs, the reference runs the original. Every hook
// before attn_out of layer 1 must agree, attn_out of layer 1 and the
// logits must not.
func TestAgreementArchDetectsChangedBias(t *testing.T) {
	for _, arch := range []string{"gpt2", "gptneox"} {
		t.Run(arch, func(t *testing.T) {
			dir := t.TempDir()
			orig := writeArchModel(t, dir, archCase{name: arch, arch: arch, typ: models.F32})
			f, err := models.Open(orig)
			if err != nil {
				t.Fatal(err)
			}
			const name = "blk.1.attn_output.bias"
			ti, ok := f.Tensor(name)
			if !ok {
				t.Fatalf("no %s", name)
			}
			changed := filepath.Join(dir, "changed.gguf")
			writeChanged(t, f, ti, 5, 1, changed)
			m, ref := loadWithReference(t, changed, orig)
			firstBad := models.Hook{Kind: models.AttnOut, Layer: 1}
			before := true
			for _, d := range compareRun(t, m, ref, promptSentence.tokens(t, m)) {
				before = before && d.hook != firstBad
				err := reference.Compare(d.hook.Name(), d.got, d.want, lnF32Bounds[d.hook.Kind])
				switch {
				case before && err != nil:
					t.Errorf("%s is computed before the changed bias is added, yet: %v", d.hook.Name(), err)
				case (d.hook == firstBad || d.hook.Kind == models.Logits) && err == nil:
					t.Errorf("%s agrees with the reference (worst %.3g) although llama.cpp ran a changed %s", d.hook.Name(), d.worst(), name)
				case d.hook == firstBad:
					// exactly element 5 moved by 1 at every position
					for p := range d.got {
						if g := d.got[p][5] - d.want[p][5]; math.Abs(float64(g)-1) > 1e-4 {
							t.Errorf("attn_out.1[%d][5] moved by %g, want 1", p, g)
						}
					}
				}
			}
		})
	}
}

// TestSynthPresetsRun writes the gpt2-small, pythia-70m and pythia-160m
// presets (as Q8_0, the smallest files: 130, 75 and 170 MB) and runs them
// in llama.cpp: it must recognise each shape as the model it imitates and
// compute finite activations and logits.
func TestSynthPresetsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 375 MB of models")
	}
	for _, tc := range []struct {
		preset string
		desc   string // llama.cpp's llama_model_desc: architecture and size class
	}{
		{"gpt2-small", "gpt2 0.1B Q8_0"},
		{"pythia-70m", "gptneox 70M Q8_0"},
		{"pythia-160m", "gptneox 160M Q8_0"},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			spec, err := models.SynthPreset(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			spec.Type = models.Q8_0
			spec.VocabPath = testmodels.Path(t, models.SynthVocab(spec.Arch))
			path := filepath.Join(t.TempDir(), tc.preset+".gguf")
			if err := models.WriteSynthetic(path, spec); err != nil {
				t.Fatal(err)
			}
			m, err := LoadModel(path, ModelParams{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if d := m.Desc(); !strings.HasPrefix(d, tc.desc) {
				t.Errorf("llama.cpp describes the model as %q, want %q", d, tc.desc)
			}
			toks := prompt{"s", storyText, 6}.tokens(t, m)
			hooks := []models.Hook{{Kind: models.AttnOut, Layer: spec.NLayer - 1}, {Kind: models.MLPOut, Layer: spec.NLayer - 1},
				{Kind: models.ResidPost, Layer: spec.NLayer - 1}, {Kind: models.Logits, Layer: -1}}
			c := runOne(t, m, ContextParams{KVType: "f32"}, [][]int32{toks}, hooks)[0]
			for _, h := range hooks {
				a := get(t, c, h)
				var ss float64
				for _, v := range a.Data {
					ss += float64(v) * float64(v)
				}
				if a.Rows() != len(toks) || math.IsNaN(ss) || math.IsInf(ss, 0) || ss == 0 {
					t.Errorf("%s: %d rows, sum of squares %g", h.Name(), a.Rows(), ss)
				}
			}
		})
	}
}

// TestPatchAgreementArch patches in llama.cpp, through the recorder, the
// nodes that are special in these architectures, and compares every hook
// with reference.RunPatched: attn_out (the unnamed node after the bias; for
// qwen2 the unnamed W_O product), mlp_out of Pythia (the first of two nodes
// named ffn_out-L) and resid_pre of gpt2's layer 0 (token + position
// embedding, inpL). Each replacement
// row is the row of another prompt, so that later layers see a realistic
// change.
func TestPatchAgreementArch(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		c     archCase
		hooks []models.Hook
	}{
		{archCase{name: "gpt2", arch: "gpt2", typ: models.F32}, []models.Hook{{Kind: models.ResidPre, Layer: 0}, {Kind: models.AttnOut, Layer: 1}}},
		{archCase{name: "pythia", arch: "gptneox", typ: models.F32}, []models.Hook{{Kind: models.AttnOut, Layer: 0}, {Kind: models.MLPOut, Layer: 1}}},
		{archCase{name: "qwen2", arch: "qwen2", nHeadKV: 2, untied: true, typ: models.F32}, []models.Hook{{Kind: models.AttnOut, Layer: 1}}},
	} {
		t.Run(tc.c.name, func(t *testing.T) {
			path := writeArchModel(t, dir, tc.c)
			m, ref := loadWithReference(t, path, path)
			tokens := promptSentence.tokens(t, m)
			donor := prompt40.tokens(t, m)[:len(tokens)]
			hooks := slices.DeleteFunc(allHooks(m.NLayer()), func(h models.Hook) bool { return !m.Hooks.Has(h.Kind) })
			donorCache := runOne(t, m, ContextParams{KVType: "f32", Threads: 1}, [][]int32{donor}, hooks)[0]
			var patches []Patch
			var reps []reference.Replacement
			for _, h := range tc.hooks {
				a := get(t, donorCache, h)
				patches = append(patches, PatchFrom(a, 3, 5))
				for _, p := range []int{3, 5} {
					reps = append(reps, reference.Replacement{Hook: h.Name(), Pos: p, Row: a.Row(p)})
				}
			}
			ctx, err := m.NewContext(ContextParams{KVType: "f32", Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer ctx.Close()
			caches, err := ctx.Run([][]int32{tokens}, RunOptions{Hooks: hooks, Patches: [][]Patch{patches}})
			if err != nil {
				t.Fatal(err)
			}
			rr, err := ref.RunPatched(tokens, reps)
			if err != nil {
				t.Fatal(err)
			}
			base, err := ref.Run(tokens)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hooks {
				a := get(t, caches[0], h)
				want, _ := rr.Get(h.Name())
				got := make([][]float32, a.Rows())
				for p := range got {
					got[p] = a.Row(p)
				}
				if err := reference.Compare(h.Name(), got, want, lnF32Bounds[h.Kind]); err != nil {
					t.Error(err)
				}
			}
			// the patch changed the logits where it should
			pl, _ := rr.Get("logits")
			bl, _ := base.Get("logits")
			if reference.RelL2(pl[5], bl[5]) < 1e-3 {
				t.Errorf("the patches moved the logits at position 5 by only %.3g", reference.RelL2(pl[5], bl[5]))
			}
		})
	}
}
