package reference

import (
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

func mustLoad(t *testing.T, path string) *Model {
	t.Helper()
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// greedy runs tokens, then appends the argmax of the last position's logits
// n times, and returns the whole sequence with the Result of its last run.
func greedy(t *testing.T, m *Model, tokens []int32, n int) ([]int32, *Result) {
	t.Helper()
	tokens = slices.Clone(tokens)
	var r *Result
	for i := 0; i <= n; i++ {
		r = mustRun(t, m, tokens)
		if i == n {
			break
		}
		logits := mustGet(t, r, "logits")
		tokens = append(tokens, argmax(logits[len(logits)-1]))
	}
	return tokens, r
}

// decode joins the vocabulary pieces of tokens, with SentencePiece's "▁" as a
// space.
func decode(t *testing.T, path string, tokens []int32) string {
	t.Helper()
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	vocab, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok {
		t.Fatalf("%s: no tokenizer.ggml.tokens", path)
	}
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteString(vocab[tok])
	}
	return strings.ReplaceAll(b.String(), "▁", " ")
}

// checkRun checks what must hold for any run of a real model: every value
// finite, the residual identities exact, and a second run bit-identical.
func checkRun(t *testing.T, m *Model, r *Result) {
	t.Helper()
	for _, name := range r.Names() {
		for p, row := range mustGet(t, r, name) {
			for i, v := range row {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s position %d [%d] = %g", name, p, i, v)
				}
			}
		}
	}
	again := mustRun(t, m, r.Tokens)
	for _, name := range r.Names() {
		// Determinism: the reference has no threads and no randomness.
		if err := Compare(name, mustGet(t, again, name), mustGet(t, r, name), 0); err != nil {
			t.Errorf("second run differs: %v", err)
		}
	}
	checkResidualAdds(t, r, m.Config.NLayer)
}

// The greedy continuations below are what the reference produces; that they
// read as the start of a TinyStories story is the end-to-end check that the
// conventions (RoPE pairing, kv head mapping, weight orientation) are right:
// a wrong one gives word salad.

func TestStories260K(t *testing.T) {
	path := testmodels.Path(t, testmodels.Stories260K)
	m := mustLoad(t, path)
	want := Config{NLayer: 5, DModel: 64, NHead: 8, NHeadKV: 4, DHead: 8, DFF: 172, NVocab: 512, RopeBase: 10000, NormEps: float64(float32(1e-5))}
	if m.Config != want || m.TiedEmbeddings {
		t.Fatalf("config %+v tied %v, want %+v untied", m.Config, m.TiedEmbeddings, want)
	}
	tokens, r := greedy(t, m, []int32{1}, 12) // from BOS
	if got, want := decode(t, path, tokens), "<s> Once upon a time, there was a little girl"; got != want {
		t.Errorf("greedy continuation %v = %q, want %q", tokens, got, want)
	}
	checkRun(t, m, r)
}

func TestTinyStories656K(t *testing.T) {
	f16Path := testmodels.Path(t, testmodels.TinyStories656KF16)
	q8Path := testmodels.Path(t, testmodels.TinyStories656KQ8)
	f16, q8 := mustLoad(t, f16Path), mustLoad(t, q8Path)
	want := Config{NLayer: 2, DModel: 128, NHead: 8, NHeadKV: 4, DHead: 16, DFF: 384, NVocab: 2048, RopeBase: 10000, NormEps: float64(float32(1e-6))}
	for _, m := range []*Model{f16, q8} {
		if m.Config != want || !m.TiedEmbeddings {
			t.Fatalf("config %+v tied %v, want %+v tied", m.Config, m.TiedEmbeddings, want)
		}
	}
	const story = "<|start_story|>Once upon a time, there was a little girl named Lily. She had a toy car that she loved "
	tokens, r := greedy(t, f16, []int32{1}, 12)
	if got := decode(t, f16Path, tokens); got != story {
		t.Errorf("F16 greedy continuation %v = %q, want %q", tokens, got, story)
	}
	checkRun(t, f16, r)

	// The Q8_0 file holds the same weights rounded to 8 bits: each matrix
	// within about 0.5% of the F16 one (a misread block layout gives errors
	// near 100%), the same greedy story, and activations within a few percent.
	if e := RelL2(q8.tokEmbd, f16.tokEmbd); e > 0.01 {
		t.Errorf("Q8_0 token_embd differs from F16 by relative L2 %.3g, want < 0.01", e)
	}
	for l := range f16.layers {
		a, b := f16.layers[l], q8.layers[l]
		for _, w := range []struct {
			name string
			a, b linear
		}{{"attn_q", a.wq, b.wq}, {"attn_k", a.wk, b.wk}, {"attn_v", a.wv, b.wv}, {"attn_output", a.wo, b.wo},
			{"ffn_gate", a.gate, b.gate}, {"ffn_up", a.up, b.up}, {"ffn_down", a.down, b.down}} {
			if e := RelL2(w.b.w, w.a.w); e > 0.01 {
				t.Errorf("Q8_0 blk.%d.%s differs from F16 by relative L2 %.3g, want < 0.01", l, w.name, e)
			}
		}
	}
	tokens8, r8 := greedy(t, q8, []int32{1}, 12)
	if got := decode(t, q8Path, tokens8); got != story {
		t.Errorf("Q8_0 greedy continuation %v = %q, want %q", tokens8, got, story)
	}
	checkRun(t, q8, r8)
	for _, name := range r.Names() {
		// Measured: at most 2% per position (blocks.1.hook_mlp_out).
		if err := Compare(name, mustGet(t, r8, name), mustGet(t, r, name), 0.05); err != nil {
			t.Errorf("Q8_0 against F16: %v", err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.gguf"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want an error wrapping fs.ErrNotExist", err)
	}
}
