package llamacpp

import (
	"math"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// TestGenerateMatchesFullDecode checks the KV-cache decode loop against one
// decode of the whole generated sequence: at every step the generated
// token is the argmax of the full decode's logits there, and its
// log-probability agrees.
func TestGenerateMatchesFullDecode(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	prompt, _ := m.Tokenize("Once upon a time, there was a", TokenizeOptions{})
	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 24
	g, err := c.Generate(prompt, GenerateOptions{N: n, KeepLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Tokens) != n || len(g.Logits) != n {
		t.Fatalf("%d tokens, %d logits rows; want %d each", len(g.Tokens), len(g.Logits), n)
	}
	if !identical(g.First, g.Logits[0]) {
		t.Error("First differs from Logits[0]")
	}
	full := append(append([]int32(nil), prompt...), g.Tokens...)
	caches, err := c.Run([][]int32{full}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lg := get(t, caches[0], models.Hook{Kind: models.Logits, Layer: -1})
	for i, tok := range g.Tokens {
		row := lg.Row(len(prompt) - 1 + i)
		// One token per decode and one batch of all tokens round
		// differently (different matrix shapes): logits agree to ~1e-5.
		if d := maxAbsDiff(row, g.Logits[i]); d > 1e-4 {
			t.Errorf("step %d: logits differ from the full decode by %.3g", i, d)
		}
		top := lens.TopK(row, 2)
		if top[0].ID != tok && top[0].Value-top[1].Value > 1e-4 {
			t.Errorf("step %d: generated %d, the full decode's argmax is %d", i, tok, top[0].ID)
		}
		if lp, got := lens.LogSoftmaxAt(row, tok), lens.LogSoftmaxAt(g.Logits[i], tok); math.Abs(lp-got) > 1e-4 {
			t.Errorf("step %d: log-prob %.6f, full decode %.6f", i, got, lp)
		}
	}
	// Greedy decoding is deterministic: a second run repeats it exactly.
	g2, err := c.Generate(prompt, GenerateOptions{N: n})
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Tokens {
		if g2.Tokens[i] != g.Tokens[i] {
			t.Fatalf("second generation differs at step %d", i)
		}
	}
	var text strings.Builder
	for _, id := range g.Tokens {
		text.Write(m.Piece(id))
	}
	t.Logf("greedy continuation: %q", text.String())
}

func TestGenerateStopsAndErrors(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	prompt, _ := m.Tokenize("The end.", TokenizeOptions{})
	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Generate(prompt, GenerateOptions{N: 256}); err == nil || !strings.Contains(err.Error(), "-c") {
		t.Errorf("prompt + N beyond the context: err = %v, want advice to pass -c", err)
	}
	if _, err := c.Generate(nil, GenerateOptions{N: 1}); err == nil {
		t.Error("empty prompt: no error")
	}
	g, err := c.Generate(prompt, GenerateOptions{N: 0})
	if err != nil || len(g.Tokens) != 0 || len(g.First) != m.NVocab() {
		t.Errorf("N=0: %v, %d tokens, %d logits; want the next-token logits only", err, len(g.Tokens), len(g.First))
	}
	// With StopAtEOG, generation ends at the first end-of-generation token.
	g, err = c.Generate(prompt, GenerateOptions{N: 200, StopAtEOG: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range g.Tokens[:len(g.Tokens)-1] {
		if id == m.EOS() {
			t.Errorf("EOS at step %d but generation went on", i)
		}
	}
}

// TestGenerateSteered checks that a control vector applies to generation:
// the prompt and every generated token.
func TestGenerateSteered(t *testing.T) {
	m := loadShared(t, "stories260K.gguf")
	prompt, _ := m.Tokenize("Once upon a time", TokenizeOptions{})
	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dirs := make([][]float32, m.NLayer())
	if err := c.SetControlVector(dirs); err != nil { // zeros: the baseline
		t.Fatal(err)
	}
	base, err := c.Generate(prompt, GenerateOptions{N: 16, KeepLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	dirs[1] = randomDir(7, m.NEmbd(), 8)
	if err := c.SetControlVector(dirs); err != nil {
		t.Fatal(err)
	}
	steered, err := c.Generate(prompt, GenerateOptions{N: 16, KeepLogits: true})
	if err != nil {
		t.Fatal(err)
	}
	if maxAbsDiff(base.First, steered.First) < 1e-3 {
		t.Error("the vector did not change the next-token logits")
	}
	// the single-token decodes of the loop are steered too: feed the
	// base tokens to the steered model and compare with its full decode
	full := append(append([]int32(nil), prompt...), steered.Tokens...)
	caches, err := c.Run([][]int32{full}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lg := get(t, caches[0], models.Hook{Kind: models.Logits, Layer: -1})
	for i := range steered.Tokens {
		if d := maxAbsDiff(lg.Row(len(prompt)-1+i), steered.Logits[i]); d > 1e-4 {
			t.Fatalf("step %d: the steered loop's logits differ from a steered full decode by %.3g", i, d)
		}
	}
}
