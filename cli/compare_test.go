package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	goldenA = "Once upon a time, there was a little girl. One day,"
	goldenB = "Once upon a time, there was a little boy. One day,"
)

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./cli -run %s -update to create it)", err, t.Name())
	}
	if name[len(name)-5:] == ".json" {
		var g, w any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		// Numbers may move in the last digits between CPUs (SIMD
		// width changes float32 summation order); 1e-4 relative is far
		// above that and far below any real change.
		if d := jsonDiff("", g, w); d != "" {
			t.Errorf("%s differs from golden: %s", name, d)
		}
		return
	}
	if d := textDiff(got, string(want)); d != "" {
		t.Errorf("%s differs from golden (-update to accept): %s\n--- got\n%s\n--- want\n%s", name, d, got, want)
	}
}

// lastDigit returns 1.01 units of the last printed digit of a decimal
// number such as "0.0984" (1.01e-4) or "1.2e-05" (1.01e-6), and 0 for an
// integer.
func lastDigit(num string) float64 {
	mant, exp := num, 0
	if e := strings.IndexAny(num, "eE"); e >= 0 {
		mant = num[:e]
		exp, _ = strconv.Atoi(num[e+1:])
	}
	dot := strings.IndexByte(mant, '.')
	if dot < 0 {
		if exp == 0 {
			return 0
		}
		return 1.01 * math.Pow(10, float64(exp))
	}
	return 1.01 * math.Pow(10, float64(exp-(len(mant)-dot-1)))
}

// goldenNumber matches a printed number: the golden text files compare
// numbers by value, not by their last digit.
var goldenNumber = regexp.MustCompile(`[-+]?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?`)

// goldenLayout collapses what a number one digit wider or narrower changes:
// runs of spaces and of table rules.
var goldenLayout = regexp.MustCompile(`[ ]+|[─━═-]+`)

// textDiff compares a command's text output with a golden file: the words
// must be the same, and each number must be within one unit of its last
// printed digit of the golden value (or 1e-4 relative, for numbers printed
// with few digits). A value close to a rounding boundary prints differently
// on another CPU (float32 SIMD sums in another order differ by ~1e-6
// relative on this F32 model), which moves the last digit by one; a real
// change moves far more. It returns "" when they match, else where they
// first differ.
func textDiff(got, want string) string {
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(gl) != len(wl) {
		return fmt.Sprintf("%d lines, want %d", len(gl), len(wl))
	}
	for i := range wl {
		gn, wn := goldenNumber.FindAllString(gl[i], -1), goldenNumber.FindAllString(wl[i], -1)
		gw := goldenLayout.ReplaceAllString(goldenNumber.ReplaceAllString(gl[i], "#"), " ")
		ww := goldenLayout.ReplaceAllString(goldenNumber.ReplaceAllString(wl[i], "#"), " ")
		if gw != ww || len(gn) != len(wn) {
			return fmt.Sprintf("line %d: %q, want %q", i+1, gl[i], wl[i])
		}
		for j := range wn {
			g, err1 := strconv.ParseFloat(gn[j], 64)
			w, err2 := strconv.ParseFloat(wn[j], 64)
			if err1 != nil || err2 != nil {
				if gn[j] != wn[j] {
					return fmt.Sprintf("line %d: %q, want %q", i+1, gn[j], wn[j])
				}
				continue
			}
			tol := math.Max(1e-4*math.Abs(w), lastDigit(wn[j]))
			if math.Abs(g-w) > tol {
				return fmt.Sprintf("line %d: number %s, want %s (±%.2g)", i+1, gn[j], wn[j], tol)
			}
		}
	}
	return ""
}

func jsonDiff(path string, g, w any) string {
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok || len(gv) != len(wv) {
			return fmt.Sprintf("%s: object differs", path)
		}
		for k := range wv {
			if d := jsonDiff(path+"."+k, gv[k], wv[k]); d != "" {
				return d
			}
		}
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			return fmt.Sprintf("%s: array length differs", path)
		}
		for i := range wv {
			if d := jsonDiff(fmt.Sprintf("%s[%d]", path, i), gv[i], wv[i]); d != "" {
				return d
			}
		}
	case float64:
		gv, ok := g.(float64)
		if !ok || math.Abs(gv-wv) > 1e-4*math.Max(1, math.Abs(wv)) {
			return fmt.Sprintf("%s: %v, want %v", path, g, wv)
		}
	default:
		if g != w {
			return fmt.Sprintf("%s: %v, want %v", path, g, w)
		}
	}
	return ""
}

func TestTextDiff(t *testing.T) {
	want := "│ 1  │ blocks.4.hook_attn_out   │ 3.1    │ 1.2447 │ 2.5e-05 │\n"
	for _, c := range []struct {
		got string
		ok  bool
	}{
		{want, true},
		{"│ 1  │ blocks.4.hook_attn_out   │ 3.1    │ 1.2448 │ 2.5e-05 │\n", true},     // last digit
		{"│ 1  │ blocks.4.hook_attn_out   │ 3.1    │ 1.2446 │ 2.6e-05 │\n", true},     // last digits
		{"│ 1  │ blocks.4.hook_attn_out   │ 3.1    │ 1.25 │ 2.5e-05 │\n", false},      // 3 units
		{"│ 1  │ blocks.4.hook_attn_out   │ 3.1    │ 1.2447 │ 2.7e-05 │\n", false},    // 2 units
		{"│ 1  │ blocks.3.hook_attn_out   │ 3.1    │ 1.2447 │ 2.5e-05 │\n", false},    // another layer
		{"│ 1  │ blocks.4.hook_mlp_out   │ 3.1    │ 1.2447 │ 2.5e-05 │\n", false},     // another hook
		{"│ 1  │ blocks.4.hook_attn_out   │ 3.09   │ 1.2447 │ 2.5e-05 │\n", true},     // one digit less, wider column
		{"│ 1  │ blocks.4.hook_attn_out   │ 3.1    │ 1.2447 │ 2.5e-05 │\nx\n", false}, // extra line
	} {
		if d := textDiff(c.got, want); (d == "") != c.ok {
			t.Errorf("textDiff(%q) = %q, want ok=%v", c.got, d, c.ok)
		}
	}
}

func TestCompareGolden(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	args := []string{"compare", "-m", model, "-t", "1", "--answer", " she", "--answer", " he", goldenA, goldenB}
	// the model path differs between machines: golden files use a fixed name
	fix := func(s string) string { return strings.ReplaceAll(s, model, "stories260K.gguf") }
	for _, tty := range []bool{true, false} {
		out, _, err := run(t, tty, args...)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, fmt.Sprintf("compare-tty-%v.golden", tty), fix(out))
	}
	out, _, err := run(t, false, append(args, "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "compare.json", fix(out))
}

func compareJSON(t *testing.T, args ...string) CompareJSON {
	t.Helper()
	return runJSON[CompareJSON](t, append([]string{"compare", "--json"}, args...)...)
}

// TestCompareBehaviour checks what the golden file cannot: the gendered
// pair really moves the pronoun, the lens reads the difference as the
// pronoun, and the last layer's lens agrees with the model.
func TestCompareBehaviour(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	doc := compareJSON(t, "-m", model, goldenA, goldenB)
	if doc.Prompts[0].Top[0].Piece != "▁she" || doc.Prompts[1].Top[0].Piece != "▁he" {
		t.Errorf("predictions: A %v, B %v; want ▁she / ▁he", doc.Prompts[0].Top[0], doc.Prompts[1].Top[0])
	}
	last := doc.Lens[len(doc.Lens)-1]
	found := func(ts []analysis.LensToken, piece string) bool {
		for _, x := range ts {
			if x.Piece == piece {
				return true
			}
		}
		return false
	}
	if !found(last.AMinusB, "▁she") || !found(last.BMinusA, "▁he") {
		t.Errorf("last layer lens A−B %v, B−A %v: want ▁she in A−B and ▁he in B−A", last.AMinusB, last.BMinusA)
	}
	// components: every layer × kind, sorted by rel descending
	if len(doc.Components) != 4*5 {
		t.Fatalf("%d components, want 20", len(doc.Components))
	}
	for i := 1; i < len(doc.Components); i++ {
		if doc.Components[i].RelL2 > doc.Components[i-1].RelL2 {
			t.Fatal("components not sorted by rel_l2")
		}
	}
}

// TestLensTopMatchesModel: on every test prompt, the last layer's lens top-1
// equals the model's own prediction, for the prompt pair's both sides.
func TestLensTopMatchesModel(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.TinyStories656KF16, testmodels.TinyStories656KQ8} {
		model := testmodels.Path(t, name)
		for _, pair := range [][2]string{
			{"Tom had a red ball", "Tom had a blue ball"},
			{"The dog was happy", "The dog was sad"},
			{"Lily", "Ben"},
		} {
			doc := compareJSON(t, "-m", model, pair[0], pair[1])
			last := doc.Lens[len(doc.Lens)-1]
			if last.A[0].ID != doc.Prompts[0].Top[0].ID || last.B[0].ID != doc.Prompts[1].Top[0].ID {
				t.Errorf("%s %q: lens top-1 %s/%s, model %s/%s", name, pair, last.A[0].Piece, last.B[0].Piece,
					doc.Prompts[0].Top[0].Piece, doc.Prompts[1].Top[0].Piece)
			}
			// and the value is the model's logit (same kernels: exact up to 1e-4)
			if math.Abs(last.A[0].Value-doc.Prompts[0].Top[0].Logit) > 1e-4*math.Max(1, math.Abs(last.A[0].Value)) {
				t.Errorf("%s: lens logit %v, model logit %v", name, last.A[0].Value, doc.Prompts[0].Top[0].Logit)
			}
		}
	}
}

func TestCompareDifferentLengths(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	a, b := "The dog was happy", "The dog was sad" // " sad" is two tokens in stories260K
	doc := compareJSON(t, "-m", model, a, b)
	la, lb := len(doc.Prompts[0].Tokens), len(doc.Prompts[1].Tokens)
	if la == lb {
		t.Fatalf("test prompts should differ in token count, both %d", la)
	}
	if doc.Positions[0].A != la-1 || doc.Positions[0].B != lb-1 {
		t.Errorf("default positions %v, want the last of each (%d, %d)", doc.Positions, la-1, lb-1)
	}
	w := strings.Join(doc.Warnings, "\n")
	if !strings.Contains(w, "different token counts") || !strings.Contains(w, `"▁sad"`) && !strings.Contains(w, `" sad"`) {
		t.Errorf("warnings do not explain the split:\n%s", w)
	}
	_, _, err := run(t, false, "compare", "-m", model, "--pos", "all", a, b)
	if err == nil || !strings.Contains(err.Error(), "all") {
		t.Errorf("--pos all on unequal lengths: %v", err)
	}
	doc = compareJSON(t, "-m", model, "--pos", "1:1,-1:-1", a, b)
	if len(doc.Positions) != 2 || doc.Positions[1].B != lb-1 {
		t.Errorf("explicit pairs: %v", doc.Positions)
	}
	// position 1 is the same token in both: its components are identical
	// there, so the aggregate equals the last pair's numbers alone
	one := compareJSON(t, "-m", model, "--pos", "-1:-1", a, b)
	l2 := map[string]float64{}
	for _, c := range doc.Components {
		l2[c.Hook] = c.L2
	}
	for _, c := range one.Components {
		if math.Abs(l2[c.Hook]-c.L2) > 1e-9*math.Max(1, c.L2) {
			t.Errorf("%s: aggregate over an identical pair changed l2: %v vs %v", c.Hook, l2[c.Hook], c.L2)
		}
	}
}

// TestAnswerScoring recomputes answer scores from logits obtained directly
// from llama.cpp: the answer's tokens after the prompt, each scored with the
// earlier ones fed in.
func TestAnswerScoring(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	a, b := goldenA, goldenB
	answers := []string{" she", " she went to the park"}
	args := []string{"-m", model, a, b}
	for _, ans := range answers {
		args = append(args, "--answer", ans)
	}
	doc := compareJSON(t, args...)
	m, err := llamacpp.LoadModel(model, llamacpp.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, err := m.NewContext(llamacpp.ContextParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	for i, ans := range answers {
		aj := doc.Answers[i]
		if i == 1 && len(aj.Tokens) < 4 {
			t.Fatalf("multi-token answer has %d tokens", len(aj.Tokens))
		}
		if aj.Tokens[0].Piece != "▁she" {
			t.Errorf("answer %q starts with %q, want ▁she (no lone ▁ after a prompt)", ans, aj.Tokens[0].Piece)
		}
		for side, prompt := range []string{a, b} {
			full, _ := m.Tokenize(prompt+ans, llamacpp.TokenizeOptions{})
			pre, _ := m.Tokenize(prompt, llamacpp.TokenizeOptions{})
			caches, err := ctx.Run([][]int32{full}, llamacpp.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			lg, _ := caches[0].At(models.Hook{Kind: models.Logits, Layer: -1})
			scores := aj.A
			if side == 1 {
				scores = aj.B
			}
			if len(scores) != len(full)-len(pre) {
				t.Fatalf("%q: %d scores, want %d", ans, len(scores), len(full)-len(pre))
			}
			total := 0.0
			for k, s := range scores {
				row := lg.Row(len(pre) + k - 1)
				id := full[len(pre)+k]
				// log-softmax by hand in float64
				mx := math.Inf(-1)
				for _, v := range row {
					mx = math.Max(mx, float64(v))
				}
				sum := 0.0
				rank := 0
				for _, v := range row {
					sum += math.Exp(float64(v) - mx)
					if v > row[id] {
						rank++
					}
				}
				lp := float64(row[id]) - mx - math.Log(sum)
				total += lp
				// compare decodes A and B as two sequences of one batch,
				// this test one sequence alone: float32 summation order
				// differs, which llamacpp's tests bound by 1e-5 relative
				if s.ID != id || s.Rank != rank || math.Abs(s.Logit-float64(row[id])) > 1e-5*math.Abs(float64(row[id])) || math.Abs(s.Prob-math.Exp(lp)) > 1e-5 {
					t.Errorf("%q side %d token %d: got %+v, want id %d rank %d logit %v prob %v", ans, side, k, s, id, rank, row[id], math.Exp(lp))
				}
			}
			got := aj.LogProbA
			if side == 1 {
				got = aj.LogProbB
			}
			if math.Abs(got-total) > 1e-5*math.Max(1, math.Abs(total)) {
				t.Errorf("%q side %d: logprob %v, want %v", ans, side, got, total)
			}
		}
	}
	if doc.Answers[0].Note == "" || !strings.Contains(doc.Answers[0].Note, "lone") {
		t.Errorf("no note on SentencePiece's lone ▁: %q", doc.Answers[0].Note)
	}
}

func TestCompareBadFlags(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compare", "-m", model, "only one"}, "two"},
		{[]string{"compare", "-m", model, "", "b"}, "non-empty"},
		{[]string{"compare", "-m", model, "--pos", "99", "a b", "c d"}, "out of range"},
		{[]string{"compare", "-m", model, "--pos", "x", "a b", "c d"}, "x"},
		{[]string{"compare", "-m", model, "--lens-norm", "softmax", "a", "b"}, "softmax"},
		{[]string{"compare", "-m", model, "--sort", "size", "a", "b"}, "size"},
		{[]string{"compare", "-m", model, "--top", "0", "a", "b"}, "--top"},
		{[]string{"compare", "-m", model, "--kinds", "resid_post.3", "a", "b"}, "without a layer"},
		{[]string{"compare", "-m", model, "--kinds", "bogus", "a", "b"}, "bogus"},
		{[]string{"compare", "-m", model, "--answer", "", "a", "b"}, "empty"},
		{[]string{"compare", "-m", model, "--a-file", "/nonexistent/a.txt", "--b-file", "/nonexistent/b.txt"}, "a.txt"},
		{[]string{"compare", "-m", model, "--a-file", "x", "a", "b"}, "choose one"},
		{[]string{"compare", "a", "b"}, "-m"},
	} {
		_, _, err := run(t, false, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want it to mention %q", tc.args[1:], err, tc.want)
		}
	}
	// files work
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte(goldenA+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.txt"), []byte(goldenB+"\n"), 0o644)
	doc := compareJSON(t, "-m", model, "--a-file", filepath.Join(dir, "a.txt"), "--b-file", filepath.Join(dir, "b.txt"))
	if doc.Prompts[0].Text != goldenA || doc.Prompts[1].Text != goldenB {
		t.Errorf("prompts from files: %q %q", doc.Prompts[0].Text, doc.Prompts[1].Text)
	}
}
