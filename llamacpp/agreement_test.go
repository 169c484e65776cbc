package llamacpp

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// The tests in this file check every number lldiff captures from llama.cpp
// against models/reference, a plain Go forward pass that shares no code with
// llama.cpp: every hook (resid_pre, z, attn_out, resid_mid, mlp_out and
// resid_post at every layer, ln_final and logits) at every position, and the
// most likely next token at every position.
//
// With F32 weights and an F32 KV cache both sides compute the same float32
// function, in other summation orders, and llama.cpp builds the RoPE angles
// in float32: every hook must agree to 1e-4 relative L2 per vector. With F16
// or quantized weights, ggml's CPU matrix products first round their input
// activations to F16 (F16 weights) or quantize them to Q8_0 in blocks of 32
// (Q8_0 and Q4_0 weights), while the reference multiplies the dequantized
// weights with float32 activations. Those bounds are measured per hook kind
// and set just above the measurement; each is written beside its value.

// storyText is real text for prompts of up to 300 tokens (325 tokens for
// stories260K, 81 for TinyStories-656K, 201 for the Llama 2 vocabulary).
const storyText = "Once upon a time, there was a little girl named Lily. She lived in a small house " +
	"with her mom and dad and a big brown dog named Max. Every morning, Lily and Max went to " +
	"the park to play. They ran on the green grass and looked at the birds in the trees. One " +
	"day, Lily saw a shiny red ball under a bush. She picked it up and showed it to Max. Max " +
	"wagged his tail and barked. Lily threw the ball and Max ran very fast to get it. Then a " +
	"boy named Tim came to the park. He was sad because he lost his ball. Lily looked at the " +
	"red ball and thought for a moment. She said, \"Is this your ball?\" Tim smiled and said " +
	"yes. Lily gave the ball back to Tim, and they played together all day. When the sun went " +
	"down, Lily went home with Max. She was happy because she had made a new friend."

// prompt is a text to tokenize, with BOS, and keep the first n tokens of
// (n = 0: all of them).
type prompt struct {
	name string
	text string
	n    int
}

var (
	promptBOS      = prompt{"bos", "", 0} // the BOS token alone
	promptSentence = prompt{"sentence", "Tom had a big red ball. He liked to play with it in the park.", 0}
	prompt40       = prompt{"story40", storyText, 40}
	prompt300      = prompt{"story300", storyText, 300}
)

// tokens tokenizes p for m, failing the test when the text is shorter than
// p.n tokens or the empty text is not the BOS token alone.
func (p prompt) tokens(t *testing.T, m *Model) []int32 {
	t.Helper()
	ids, err := m.Tokenize(p.text, TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.text == "" && (len(ids) != 1 || ids[0] != m.BOS()) {
		t.Fatalf("the empty text tokenized to %v, want the BOS token %d alone", ids, m.BOS())
	}
	if len(ids) < p.n {
		t.Fatalf("prompt %s is %d tokens, want at least %d", p.name, len(ids), p.n)
	}
	if p.n > 0 {
		ids = ids[:p.n]
	}
	return ids
}

// bounds are the largest relative L2 error per vector allowed for each hook
// kind, between a captured activation and the reference's at the same
// position.
type bounds map[models.Kind]float64

// allKinds are the hook kinds in the order a model computes them.
var allKinds = append(slices.Clone(models.LayerKinds), models.ModelKinds...)

// exactBounds is the bound for F32 weights and an F32 KV cache. Measured
// worst: 9.4e-6 (stories260K, 300 tokens: RoPE angles built in float32 by
// llama.cpp are off by about 1e-7*pos radians), 5e-7 on the synthetic models
// (40 tokens). 1e-4 leaves room for other CPUs' summation orders; a wrong
// norm, epsilon, RoPE pairing, head grouping, mask or matrix orientation
// gives errors of order 1.
var exactBounds = uniform(1e-4)

func uniform(b float64) bounds {
	out := bounds{}
	for _, k := range allKinds {
		out[k] = b
	}
	return out
}

// agreementCase is one model file run on several prompts.
type agreementCase struct {
	path    string
	prompts []prompt
	bound   bounds
	// logitAbs, when not 0, bounds the largest absolute logit error at any
	// position, and allows near-ties: llama.cpp may pick another argmax
	// token than the reference where the reference's logit for it is below
	// its best by less than the absolute logit error measured at that
	// position. When 0 (F32 weights) the argmax must agree everywhere.
	logitAbs float64
}

// hookDiff is one hook of one run: the captured rows and the reference's,
// indexed [position][i].
type hookDiff struct {
	hook      models.Hook
	got, want [][]float32
}

// worst returns the largest relative L2 error over positions.
func (d hookDiff) worst() float64 {
	w := 0.0
	for p := range d.want {
		w = max(w, reference.RelL2(d.got[p], d.want[p]))
	}
	return w
}

// maxAbs returns the largest absolute difference of any element.
func (d hookDiff) maxAbs() float64 {
	w := 0.0
	for p := range d.want {
		for i := range d.want[p] {
			w = max(w, math.Abs(float64(d.got[p][i])-float64(d.want[p][i])))
		}
	}
	return w
}

// compareRun runs tokens through llama.cpp (F32 KV cache) with every hook
// captured and through the reference, and returns every hook in model order
// with both sides' rows. It fails the test when the two do not produce the
// same hooks with the same shapes.
func compareRun(t *testing.T, m *Model, ref *reference.Model, tokens []int32) []hookDiff {
	t.Helper()
	// the hooks the architecture has (a parallel-residual gptneox has no
	// resid_mid)
	hooks := slices.DeleteFunc(allHooks(m.NLayer()), func(h models.Hook) bool { return !m.Hooks.Has(h.Kind) })
	cache := runOne(t, m, ContextParams{KVType: "f32", Threads: 1}, [][]int32{tokens}, hooks)[0]
	rr, err := ref.Run(tokens)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rr.Names()); n != len(hooks) {
		t.Fatalf("the reference computes %d hooks, llama.cpp was asked for %d", n, len(hooks))
	}
	var out []hookDiff
	for _, h := range hooks {
		a, err := cache.Get(h.Name())
		if err != nil {
			t.Fatal(err)
		}
		want, ok := rr.Get(h.Name())
		if !ok {
			t.Fatalf("the reference has no %s", h.Name())
		}
		if a.Rows() != len(tokens) || a.Width != len(want[0]) {
			t.Fatalf("%s: captured %dx%d, reference %dx%d", h.Name(), a.Rows(), a.Width, len(want), len(want[0]))
		}
		got := make([][]float32, a.Rows())
		for p := range got {
			got[p] = a.Row(p)
		}
		out = append(out, hookDiff{hook: h, got: got, want: want})
	}
	return out
}

// writeChanged writes to dst a copy of the GGUF file f in which element i
// of the F32 tensor ti is increased by delta, and returns the element's
// value in f.
func writeChanged(t *testing.T, f *models.File, ti *models.TensorInfo, i int, delta float32, dst string) float32 {
	t.Helper()
	data, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	off := f.DataOffset + int64(ti.Offset) + 4*int64(i)
	v := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
	binary.LittleEndian.PutUint32(data[off:], math.Float32bits(v+delta))
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return v
}

// loadWithReference loads path in llama.cpp, closed when the test ends, and
// refPath in the reference (the same file, or the original of a changed
// copy).
func loadWithReference(t *testing.T, path, refPath string) (*Model, *reference.Model) {
	t.Helper()
	m, err := LoadModel(path, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ref, err := reference.Load(refPath)
	if err != nil {
		t.Fatal(err)
	}
	return m, ref
}

func argmaxRow(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// checkArgmax checks that llama.cpp's most likely token is the reference's
// at every position. With allowTies, another token is accepted where the
// reference's logit for it is below the reference's best by less than the
// largest absolute logit error at that position: a near-tie that the
// rounding of F16 or Q8_0 activations can flip. It returns how many were
// accepted.
func checkArgmax(t *testing.T, logits hookDiff, allowTies bool) (nearTies int) {
	t.Helper()
	for p := range logits.want {
		got, want := logits.got[p], logits.want[p]
		g, w := argmaxRow(got), argmaxRow(want)
		if g == w {
			continue
		}
		gap := float64(want[w]) - float64(want[g])
		errAbs := 0.0
		for i := range want {
			errAbs = max(errAbs, math.Abs(float64(got[i])-float64(want[i])))
		}
		if !allowTies || gap >= errAbs {
			t.Errorf("position %d: llama.cpp's argmax is token %d, the reference's is %d, whose logit is higher by %.3g; the largest logit error there is %.3g",
				p, g, w, gap, errAbs)
			continue
		}
		nearTies++
		t.Logf("position %d: near-tie: llama.cpp's argmax is token %d, the reference's is %d, higher by only %.3g, less than the largest logit error there, %.3g",
			p, g, w, gap, errAbs)
	}
	return nearTies
}

// runAgreement compares every hook of every prompt of tc with the reference
// and logs the worst error of each hook kind.
func runAgreement(t *testing.T, tc agreementCase) {
	m, ref := loadWithReference(t, tc.path, tc.path)
	worst := map[models.Kind]float64{}
	logitAbs, nearTies := 0.0, 0
	for _, p := range tc.prompts {
		tokens := p.tokens(t, m)
		t.Run(fmt.Sprintf("%s-%dtok", p.name, len(tokens)), func(t *testing.T) {
			for _, d := range compareRun(t, m, ref, tokens) {
				worst[d.hook.Kind] = max(worst[d.hook.Kind], d.worst())
				if err := reference.Compare(d.hook.Name(), d.got, d.want, tc.bound[d.hook.Kind]); err != nil {
					t.Error(err)
				}
				if d.hook.Kind != models.Logits {
					continue
				}
				e := d.maxAbs()
				logitAbs = max(logitAbs, e)
				if tc.logitAbs > 0 && e > tc.logitAbs {
					t.Errorf("logits: largest absolute error %.3g, bound %.3g", e, tc.logitAbs)
				}
				nearTies += checkArgmax(t, d, tc.logitAbs > 0)
			}
		})
	}
	var b strings.Builder
	for _, k := range allKinds {
		fmt.Fprintf(&b, "\n\t%-10s %.3g (bound %.2g)", k, worst[k], tc.bound[k])
	}
	t.Logf("worst relative L2 per hook kind:%s\nlargest absolute logit error %.3g; %d argmax near-ties", b.String(), logitAbs, nearTies)
}

// Bounds for F16 and quantized weights are 1.3 times the worst error
// measured (over all layers, positions and prompts), rounded up to two
// digits. The output of a matrix product (z, attn_out, mlp_out, logits)
// carries the rounding of its inputs directly; the residual stream is
// larger than what each layer adds to it, so its relative error is smaller;
// mlp_out is the worst, three matrix products of rounded inputs (gate, up,
// then down). resid_pre of layer 0 is an embedding row, which both sides
// dequantize exactly (measured difference 0): its worst is that of later
// layers.

// f16Bounds are for F16 weights: ggml rounds each matrix product's input
// activations to F16 (a relative rounding of up to 2^-11 per element), the
// reference multiplies float32 activations. Measured on TinyStories-656K
// F16 (1, 11 and 40 tokens):
var f16Bounds = bounds{
	models.ResidPre:  6.7e-4, // measured 5.15e-4
	models.Z:         9.6e-4, // measured 7.36e-4
	models.AttnOut:   9.1e-4, // measured 6.95e-4
	models.ResidMid:  6.1e-4, // measured 4.69e-4
	models.MLPOut:    1.5e-3, // measured 1.10e-3
	models.ResidPost: 9.2e-4, // measured 7.06e-4
	models.LnFinal:   1.3e-3, // measured 9.29e-4
	models.Logits:    1.1e-3, // measured 7.71e-4
}

// q8Bounds are for Q8_0 weights: ggml quantizes each matrix product's input
// activations to Q8_0 (8-bit codes with one scale per 32 values: an error
// of up to 1/254 of the block's largest value per element), the reference
// multiplies float32 activations. Measured on TinyStories-656K-Q8_0 (1, 11
// and 40 tokens):
var q8Bounds = bounds{
	models.ResidPre:  0.016, // measured 0.0120
	models.Z:         0.025, // measured 0.0187
	models.AttnOut:   0.026, // measured 0.0194
	models.ResidMid:  0.017, // measured 0.0127
	models.MLPOut:    0.041, // measured 0.0310
	models.ResidPost: 0.025, // measured 0.0187
	models.LnFinal:   0.026, // measured 0.0199
	models.Logits:    0.025, // measured 0.0190
}

func TestAgreementSharedModels(t *testing.T) {
	for _, tc := range []struct {
		name string
		agreementCase
	}{
		{"stories260K-F32", agreementCase{
			path:    testmodels.Path(t, testmodels.Stories260K),
			prompts: []prompt{promptBOS, promptSentence, prompt40, prompt300},
			bound:   exactBounds,
		}},
		{"TinyStories656K-F16", agreementCase{
			path:     testmodels.Path(t, testmodels.TinyStories656KF16),
			prompts:  []prompt{promptBOS, promptSentence, prompt40},
			bound:    f16Bounds,
			logitAbs: 0.012, // measured 0.00879
		}},
		{"TinyStories656K-Q8_0", agreementCase{
			path:     testmodels.Path(t, testmodels.TinyStories656KQ8),
			prompts:  []prompt{promptBOS, promptSentence, prompt40},
			bound:    q8Bounds,
			logitAbs: 0.38, // measured 0.288; one near-tie (40 tokens, position 3: gap 0.049)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runAgreement(t, tc.agreementCase) })
	}
}

// q4Bounds are for Q4_0 weights, whose matrix products quantize their input
// activations to Q8_0 as for Q8_0 weights (the 4-bit weights themselves are
// dequantized exactly by both sides). Measured on the two synthetic Q4_0
// models below (1, 18 and 40 tokens):
var q4Bounds = bounds{
	models.ResidPre:  0.013, // measured 0.00996
	models.Z:         0.022, // measured 0.0162
	models.AttnOut:   0.029, // measured 0.0219
	models.ResidMid:  0.014, // measured 0.0105
	models.MLPOut:    0.034, // measured 0.0260
	models.ResidPost: 0.018, // measured 0.0137
	models.LnFinal:   0.018, // measured 0.0137
	models.Logits:    0.020, // measured 0.0148
}

// TestAgreementSynthetic writes small random llama models (2 layers, d_model
// 64, 8 query heads of width 8, d_ff 128, the Llama 2 vocabulary) with 8, 4
// and 2 key/value heads (grouped-query attention with 1, 2 and 4 query heads
// per kv head), tied and untied output matrices, F32 and Q4_0.
func TestAgreementSynthetic(t *testing.T) {
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		nHeadKV  int
		untied   bool
		typ      models.GGMLType
		bound    bounds
		logitAbs float64
	}{
		{"F32-kv8-tied", 8, false, models.F32, exactBounds, 0},
		{"F32-kv4-untied", 4, true, models.F32, exactBounds, 0},
		{"F32-kv2-tied", 2, false, models.F32, exactBounds, 0},
		{"F32-kv2-untied", 2, true, models.F32, exactBounds, 0},
		// The logits of the tied models are larger (token_embd.weight has
		// σ 1, output.weight σ 1/sqrt(d_model)), and so are their errors.
		{"Q4_0-kv4-tied", 4, false, models.Q4_0, q4Bounds, 0.77},   // measured 0.586
		{"Q4_0-kv2-untied", 2, true, models.Q4_0, q4Bounds, 0.088}, // measured 0.0671; near-ties at 2 positions (gaps 0.009, 0.027)
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := models.SynthPreset("tiny")
			if err != nil {
				t.Fatal(err)
			}
			spec.NHead, spec.NHeadKV, spec.Untied, spec.Type = 8, tc.nHeadKV, tc.untied, tc.typ
			spec.Seed, spec.VocabPath = 7, vocab
			path := filepath.Join(dir, tc.name+".gguf")
			if err := models.WriteSynthetic(path, spec); err != nil {
				t.Fatal(err)
			}
			runAgreement(t, agreementCase{
				path:     path,
				prompts:  []prompt{promptBOS, promptSentence, prompt40},
				bound:    tc.bound,
				logitAbs: tc.logitAbs,
			})
		})
	}
}

// TestAgreementDetectsChangedWeight shows that the comparison can fail. One
// weight of blk.2.ffn_down.weight is changed in a copy of stories260K by the
// root-mean-square weight of that tensor (0.125); llama.cpp runs the copy, the reference
// the original. Every hook computed before the changed weight is used must
// still agree (layers 0 and 1, and layer 2 up to its MLP), and
// blocks.2.hook_mlp_out, where it is used, and the logits must not.
func TestAgreementDetectsChangedWeight(t *testing.T) {
	orig := testmodels.Path(t, testmodels.Stories260K)
	f, err := models.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	const name = "blk.2.ffn_down.weight"
	ti, ok := f.Tensor(name)
	if !ok || ti.Type != models.F32 {
		t.Fatalf("stories260K has no F32 %s", name)
	}
	var ss float64
	for _, w := range f32s(t, f, name) {
		ss += float64(w) * float64(w)
	}
	rms := float32(math.Sqrt(ss / float64(ti.NumElements())))

	// Element 0 is row 0, column 0: it adds to mlp_out[0] the first hidden
	// unit times the weight.
	path := filepath.Join(t.TempDir(), "stories260K-changed.gguf")
	w := writeChanged(t, f, ti, 0, rms, path)
	t.Logf("%s[0] changed from %g to %g (the tensor's root-mean-square weight is %g)", name, w, w+rms, rms)

	m, ref := loadWithReference(t, path, orig)
	firstBad := models.Hook{Kind: models.MLPOut, Layer: 2}
	before := true
	for _, d := range compareRun(t, m, ref, prompt40.tokens(t, m)) {
		before = before && d.hook != firstBad
		err := reference.Compare(d.hook.Name(), d.got, d.want, exactBounds[d.hook.Kind])
		switch {
		case before && err != nil:
			t.Errorf("%s is computed before the changed weight is used, yet: %v", d.hook.Name(), err)
		case (d.hook == firstBad || d.hook.Kind == models.Logits) && err == nil:
			t.Errorf("%s agrees with the reference (worst relative L2 %.3g) although llama.cpp ran a changed %s", d.hook.Name(), d.worst(), name)
		case !before:
			t.Logf("%-26s worst relative L2 %.3g", d.hook.Name(), d.worst())
		}
	}
}
