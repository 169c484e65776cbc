package cli

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// The he/she dataset: twelve prompts that differ only in their last word,
// " she" (set A) or " he" (set B), both single tokens in stories260K.
var (
	sheFile = filepath.Join("testdata", "contrast", "she.txt")
	heFile  = filepath.Join("testdata", "contrast", "he.txt")
)

// Tests run the model on one thread: the tiny test models gain nothing from
// more, and ggml's spinning threads slow down badly on a busy machine.
const oneThread = "-t1"

func contrastJSON(t *testing.T, args ...string) ContrastJSON {
	t.Helper()
	return runJSON[ContrastJSON](t, append([]string{"contrast", "--json", oneThread, "-m", testmodels.Path(t, testmodels.Stories260K)}, args...)...)
}

func pieces(ts []analysis.LensToken) []string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Piece)
	}
	return s
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestContrastHeShe: a dataset that differs only in he/she gives a
// direction whose logit lens shows the word, ranked by separation, and a
// control vector whose steering moves P(" she") and P(" he") the expected
// ways.
func TestContrastHeShe(t *testing.T) {
	cvec := filepath.Join(t.TempDir(), "she.gguf")
	doc := contrastJSON(t, "--a", sheFile, "--b", heFile, "--paired", "--export-cvec", cvec)
	if !doc.Paired || doc.A.Prompts != 12 || doc.B.Rows != 12 {
		t.Fatalf("dataset: paired %v, %d prompts, %d rows", doc.Paired, doc.A.Prompts, doc.B.Rows)
	}
	if len(doc.Components) != 15 { // 5 layers × resid_post, attn_out, mlp_out
		t.Fatalf("%d components, want 15", len(doc.Components))
	}
	for i := 1; i < len(doc.Components); i++ {
		if *doc.Components[i].Separation > *doc.Components[i-1].Separation {
			t.Fatalf("components not ranked by separation: #%d %.3f after %.3f", i+1, *doc.Components[i].Separation, *doc.Components[i-1].Separation)
		}
	}
	var post0 *analysis.ContrastComp
	for i := range doc.Components {
		c := &doc.Components[i]
		if c.Short == "resid_post.0" {
			post0 = c
		}
		if c.SignConsistency == nil || c.HeldOut == nil || c.Spread == nil {
			t.Fatalf("%s: paired statistics missing: %+v", c.Short, c)
		}
		// MeanA − MeanB = ‖Δμ‖ (float64 sums of 12 projections)
		if d := c.ProjMeanA - c.ProjMeanB - c.MeanDiffNorm; math.Abs(d) > 1e-9*c.MeanDiffNorm {
			t.Errorf("%s: projection means differ by %v from ‖Δμ‖", c.Short, d)
		}
	}
	// The difference is one token: right after it, every pair points the
	// same way and the sets separate far beyond their spread.
	if post0 == nil || *post0.SignConsistency != 1 || *post0.Separation < 5 || *post0.HeldOut != 1 {
		t.Fatalf("resid_post.0: %+v; want sign consistency 1, separation > 5, held-out 1", post0)
	}
	lz := post0.Lens
	if lz == nil || !contains(pieces(lz.MeanDiffTop), "▁she") || !contains(pieces(lz.MeanDiffBottom), "▁he") {
		t.Fatalf("lens of resid_post.0's mean difference: top %v, bottom %v; want ▁she promoted and ▁he suppressed", pieces(lz.MeanDiffTop), pieces(lz.MeanDiffBottom))
	}
	if !contains(pieces(lz.PC1Top), "▁she") {
		t.Errorf("lens of PC1 at resid_post.0: top %v lacks ▁she: is PC1 oriented so that A projects higher?", pieces(lz.PC1Top))
	}
	if doc.Cvec == nil || len(doc.Cvec.Directions) != 4 || doc.Cvec.Directions[0].Tensor != "direction.1" || doc.Cvec.Directions[0].Hook != "blocks.1.hook_resid_post" {
		t.Fatalf("control vector export: %+v", doc.Cvec)
	}

	// Steering with the exported vector, in both directions.
	sd := runJSON[SteerJSON](t, "steer", "--json", oneThread, "-m", testmodels.Path(t, testmodels.Stories260K), "--cvec", cvec,
		"--scale", "-1,0,1", "-n", "12", "--answer", " she", "--answer", " he", "Tom and Lily went to the park. Then")
	if len(sd.Scales) != 3 {
		t.Fatalf("%d scales", len(sd.Scales))
	}
	she := func(i int) float64 { return sd.Scales[i].Answers[0].Prob }
	he := func(i int) float64 { return sd.Scales[i].Answers[1].Prob }
	t.Logf("P(she) at -1, 0, 1: %.4f %.4f %.4f; P(he): %.4f %.4f %.4f", she(0), she(1), she(2), he(0), he(1), he(2))
	if !(she(2) > 2*she(1) && she(1) > she(0)) {
		t.Errorf("P(\" she\") at scales -1, 0, 1 = %.4f, %.4f, %.4f: want it to rise with the scale (doubling at +1)", she(0), she(1), she(2))
	}
	if !(he(0) > 2*he(1) && he(1) > he(2)) {
		t.Errorf("P(\" he\") at scales -1, 0, 1 = %.4f, %.4f, %.4f: want it to fall with the scale (doubling at −1)", he(0), he(1), he(2))
	}
	// A new scale changes the output (no stale graph): all three
	// continuations and distributions differ.
	for i := range sd.Scales {
		for j := i + 1; j < len(sd.Scales); j++ {
			if sd.Scales[i].Text == sd.Scales[j].Text {
				t.Errorf("scales %g and %g generate the same text %q", sd.Scales[i].Scale, sd.Scales[j].Scale, sd.Scales[i].Text)
			}
		}
	}
	if sd.Scales[1].KL != 0 || sd.Scales[0].KL < 0.1 || sd.Scales[2].KL < 0.1 {
		t.Errorf("KL to scale 0: %v, %v, %v", sd.Scales[0].KL, sd.Scales[1].KL, sd.Scales[2].KL)
	}
}

// cvectorGeneratorMean is llama.cpp's cvector-generator --method mean,
// written from its description for this test: each prompt of a pair is
// decoded alone, l_out is captured at every token, the pair's per-token
// differences are pooled over all pairs, rows with no element above 1e-6
// dropped, and the mean normalised to norm 1; the vector of layer il is
// written as direction.(il+1). (cvector-generator also drops the last
// layer, whose l_out llama.cpp cuts to the rows that output logits; here
// every layer is computed, so that lldiff's offset-0 direction.(n−1) has a
// reference too.)
func cvectorGeneratorMean(t *testing.T, m *llamacpp.Model, pairs [][2]string) map[int][]float64 {
	t.Helper()
	nl, d := m.NLayer(), m.NEmbd()
	var hooks []models.Hook
	for l := range nl {
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l})
	}
	ctx, err := m.NewContext(llamacpp.ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	sums := make([][]float64, nl)
	for l := range sums {
		sums[l] = make([]float64, d)
	}
	counts := make([]int, nl)
	for _, p := range pairs {
		var caches [2]*models.Cache
		for k, text := range p {
			ids, err := m.Tokenize(text, llamacpp.TokenizeOptions{ParseSpecial: true})
			if err != nil {
				t.Fatal(err)
			}
			c, err := ctx.Run([][]int32{ids}, llamacpp.RunOptions{Hooks: hooks})
			if err != nil {
				t.Fatal(err)
			}
			caches[k] = c[0]
		}
		for l, h := range hooks {
			a, _ := caches[0].At(h)
			b, _ := caches[1].At(h)
			for r := range a.Rows() {
				row := make([]float64, d)
				keep := false
				for i := range d {
					row[i] = float64(a.Row(r)[i] - b.Row(r)[i])
					keep = keep || row[i] > 1e-6
				}
				if !keep {
					continue
				}
				for i := range d {
					sums[l][i] += row[i]
				}
				counts[l]++
			}
		}
	}
	out := map[int][]float64{}
	for l := range sums {
		var n float64
		for i := range sums[l] {
			sums[l][i] /= float64(counts[l])
			n += sums[l][i] * sums[l][i]
		}
		for i := range sums[l] {
			sums[l][i] /= math.Sqrt(n)
		}
		out[l+1] = sums[l]
	}
	return out
}

// TestContrastMatchesCvectorGenerator: with --method mean --pos all on
// pairs of equal token length, lldiff's directions are cvector-generator's
// --method mean, one layer apart by default and at the same indices with
// --cvec-layer-offset 1.
func TestContrastMatchesCvectorGenerator(t *testing.T) {
	m, err := llamacpp.LoadModel(testmodels.Path(t, testmodels.Stories260K), llamacpp.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Pairs that differ in the middle, so that --pos all has rows before
	// the difference (identical, dropped) and after it.
	sheLines, _ := contrast.ReadPrompts(sheFile, contrast.ReadOptions{})
	var pairs [][2]string
	for i, p := range sheLines[:8] {
		a := p.Text + " was happy."
		b := strings.TrimSuffix(p.Text, "she") + "he was happy."
		if i%2 == 1 {
			a, b = strings.TrimSuffix(p.Text, "she")+"he was sad.", p.Text+" was sad."
		}
		pairs = append(pairs, [2]string{a, b})
	}
	dir := t.TempDir()
	var jl strings.Builder
	for _, p := range pairs {
		b, _ := json.Marshal(map[string]string{"a": p[0], "b": p[1]})
		jl.Write(append(b, '\n'))
	}
	pairsFile := filepath.Join(dir, "pairs.jsonl")
	if err := os.WriteFile(pairsFile, []byte(jl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	want := cvectorGeneratorMean(t, m, pairs)
	// --pos all takes the positions from the first differing token on
	wantRows := 0
	for _, p := range pairs {
		a, _ := m.Tokenize(p[0], llamacpp.TokenizeOptions{})
		b, _ := m.Tokenize(p[1], llamacpp.TokenizeOptions{})
		if len(a) != len(b) {
			t.Fatalf("pair %q has %d and %d tokens", p, len(a), len(b))
		}
		first := 0
		for a[first] == b[first] {
			first++
		}
		if first < 3 {
			t.Fatalf("pair %q differs at token %d: want a shared prefix", p, first)
		}
		wantRows += len(a) - first
	}
	for _, off := range []int{0, 1} {
		file := filepath.Join(dir, "lldiff-"+strconv.Itoa(off)+".gguf")
		// --special: cvector-generator parses special tokens
		doc := contrastJSON(t, "--pairs", pairsFile, "--pos", "all", "--special", "--kinds", "resid_post", "--lens-k", "0",
			"--method", "mean", "--export-cvec", file, "--cvec-layer-offset", strconv.Itoa(off))
		if doc.A.Rows != wantRows || doc.B.Rows != wantRows {
			t.Errorf("--pos all took %d and %d rows, want %d (from each pair's first difference on)", doc.A.Rows, doc.B.Rows, wantRows)
		}
		cv, err := contrast.ReadControlVector(file)
		if err != nil {
			t.Fatal(err)
		}
		if cv.Offset != off {
			t.Errorf("file records offset %d, want %d", cv.Offset, off)
		}
		nl := m.NLayer()
		for n := 1; n < nl; n++ {
			measured := n - off // the layer lldiff measured direction.n at
			ref := want[measured+1]
			got := cv.Directions[n]
			if got == nil || ref == nil {
				t.Fatalf("offset %d: direction.%d missing (lldiff %v, reference %v)", off, n, got != nil, ref != nil)
			}
			// Batched decoding (8 sequences per batch) rounds differently
			// from one sequence per decode: activations agree to ~1e-6, and
			// so do the unit directions.
			worst := 0.0
			for i := range got {
				worst = max(worst, math.Abs(float64(got[i])-ref[i]))
			}
			t.Logf("offset %d: direction.%d vs cvector-generator's: max |Δ| %.2g", off, n, worst)
			if worst > 1e-5 {
				t.Errorf("offset %d: direction.%d (resid_post.%d) differs from cvector-generator's direction.%d by up to %.3g", off, n, measured, measured+1, worst)
			}
		}
		if off == 1 && len(cv.Directions) != nl-1 {
			t.Errorf("offset 1 wrote %d directions; cvector-generator writes n_layer−1 = %d", len(cv.Directions), nl-1)
		}
	}
}

func TestContrastUnpaired(t *testing.T) {
	dir := t.TempDir()
	she, _ := os.ReadFile(sheFile)
	lines := strings.Split(strings.TrimSpace(string(she)), "\n")
	a := filepath.Join(dir, "a.txt")
	os.WriteFile(a, []byte(strings.Join(lines[:7], "\n")), 0o644)
	doc := contrastJSON(t, "--a", a, "--b", heFile, "--kinds", "resid_post")
	if doc.Paired || doc.A.Prompts != 7 || doc.B.Prompts != 12 {
		t.Fatalf("unpaired sets: %+v %+v paired %v", doc.A, doc.B, doc.Paired)
	}
	for _, c := range doc.Components {
		if c.SignConsistency != nil {
			t.Errorf("%s: sign consistency %v for unpaired sets", c.Short, *c.SignConsistency)
		}
		if c.Separation == nil || c.HeldOut == nil {
			t.Errorf("%s: separation or held-out missing", c.Short)
		}
	}
	// equal counts without --paired: a hint
	doc = contrastJSON(t, "--a", sheFile, "--b", heFile, "--kinds", "resid_post", "--lens-k", "0")
	if !strings.Contains(strings.Join(doc.Warnings, "\n"), "--paired") {
		t.Errorf("warnings %q lack the --paired hint", doc.Warnings)
	}
}

func TestContrastBadInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.txt", "")
	blank := write("blank.txt", "\n \n")
	three := write("three.txt", "she ran\nshe sat\nshe ate\n")
	two := write("two.txt", "he ran\nhe sat\n")
	// " Lily" and " Tom" tokenize to different lengths
	uneq := write("uneq.jsonl", `{"a": "Lily was happy", "b": "Tom was happy"}`+"\n"+`{"a": "she ran", "b": "he ran"}`+"\n")
	noB := write("nob.jsonl", `{"a": "x"}`+"\n")
	long := write("long.txt", strings.Repeat("the big dog ran and ", 20)+"\n")
	model := testmodels.Path(t, testmodels.Stories260K)
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"empty file", []string{"--a", empty, "--b", two}, true, "empty.txt has no prompts"},
		{"blank lines only", []string{"--a", three, "--b", blank}, true, "blank.txt has no prompts"},
		{"unequal pair counts", []string{"--a", three, "--b", two, "--paired"}, true, "three.txt has 3"},
		{"pos all unequal length", []string{"--pairs", uneq, "--pos", "all"}, true, "uneq.jsonl:1: A has"},
		{"pos all unpaired", []string{"--a", three, "--b", two, "--pos", "all"}, true, "needs pairs"},
		{"pos out of range", []string{"--a", three, "--b", two, "--pos", "7"}, true, "three.txt:1: position 7 is outside"},
		{"prompt too long", []string{"--a", long, "--b", two, "-c", "64"}, true, "long.txt:1 has"},
		{"pair without b", []string{"--pairs", noB}, true, `both an "a" and a "b"`},
		{"missing b", []string{"--a", three}, true, "--b"},
		{"missing file", []string{"--a", filepath.Join(dir, "nope.txt"), "--b", two}, true, "nope.txt"},
		{"cvec without resid_post", []string{"--a", three, "--b", two, "--kinds", "attn_out", "--export-cvec", filepath.Join(dir, "x.gguf")}, true, "resid_post"},
		{"bad method", []string{"--a", three, "--b", two, "--method", "median"}, true, "--method"},
		{"bad offset", []string{"--a", three, "--b", two, "--cvec-layer-offset", "2"}, true, "--cvec-layer-offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, append([]string{"contrast", oneThread, "-m", model}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			var u *UsageError
			if tc.usage != errors.As(err, &u) {
				t.Errorf("usage error %v, want %v (exit code %d)", !tc.usage, tc.usage, ExitCode(err))
			}
		})
	}
}

func TestContrastProgressOnlyOnTerminal(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	args := []string{"contrast", oneThread, "-m", model, "--a", sheFile, "--b", heFile, "--paired", "--kinds", "resid_post", "-P", "4"}
	out, errOut, err := run(t, true, args...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "decoding 24/24 prompts") || !strings.Contains(errOut, "\r\033[K") {
		t.Errorf("terminal: progress %q lacks the final count or the line clear", errOut)
	}
	for _, want := range []string{"components ranked by separation", "┌", "logit lens of the resid_post directions"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out)
		}
	}
	out, errOut, err = run(t, false, args...)
	if err != nil {
		t.Fatal(err)
	}
	if errOut != "" || strings.Contains(out, "┌") {
		t.Errorf("not a terminal: progress %q or a boxed table in the output", errOut)
	}
	if !strings.Contains(out, "#\thook\tsep (d)") {
		t.Errorf("not a terminal: want tab-separated tables:\n%s", out)
	}
}

func TestContrastSaveVectors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vecs")
	cvec := filepath.Join(t.TempDir(), "v.gguf")
	doc := contrastJSON(t, "--a", sheFile, "--b", heFile, "--paired", "--kinds", "resid_post,mlp_out", "--save-vectors", dir, "--export-cvec", cvec)
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx analysis.VectorIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Files) != 20 { // 10 hooks × mean_diff and pc1
		t.Fatalf("%d files, want 20", len(idx.Files))
	}
	norms := map[string]float64{}
	for _, c := range doc.Components {
		norms[c.Hook] = c.MeanDiffNorm
	}
	for _, f := range idx.Files {
		v, err := analysis.ReadNpyVector(filepath.Join(dir, f.File))
		if err != nil {
			t.Fatal(err)
		}
		n := diff.Norm(v)
		want := 1.0
		if f.Method == "mean_diff" {
			want = norms[f.Hook]
		}
		// float32 storage: 1e-6 relative
		if math.Abs(n-want) > 1e-6*want || math.Abs(f.Norm-want) > 1e-6*want {
			t.Errorf("%s: norm %v (index %v), want %v", f.File, n, f.Norm, want)
		}
	}
	// vec: the saved resid_post mean differences and the exported unit
	// directions point the same way, layer by layer
	vd := runJSON[VecJSON](t, "vec", "--json", dir, cvec)
	if len(vd.Hooks) != 4 {
		t.Fatalf("vec compared %d hooks, want resid_post.1..4", len(vd.Hooks))
	}
	for _, h := range vd.Hooks {
		if h.Cosine[0][1] == nil || h.Projection[0][1] == nil {
			t.Fatalf("%s: undefined cosine or projection", h.Hook)
		}
		if *h.Cosine[0][1] < 1-1e-6 || math.Abs(h.Norms[1]-1) > 1e-6 || math.Abs(*h.Projection[0][1]-h.Norms[0]) > 1e-5*h.Norms[0] {
			t.Errorf("%s: cos %v, norms %v, projection %v", h.Hook, *h.Cosine[0][1], h.Norms, *h.Projection[0][1])
		}
	}
	if py := npy.NumpyPython(); py != "" {
		script := `import numpy, json, sys, os
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
for f in idx["files"]:
    a = numpy.load(os.path.join(d, f["file"]))
    assert a.shape == (64,) and a.dtype == numpy.float32, (f, a.shape)
    assert abs(numpy.linalg.norm(a.astype(numpy.float64)) - f["norm"]) < 1e-5 * max(1, f["norm"]), f
print("ok", len(idx["files"]))`
		o, err := exec.Command(py, "-c", script, dir).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "ok 20") {
			t.Errorf("numpy could not read the vectors: %v\n%s", err, o)
		}
	}
	// the directory is now not empty
	_, _, err = run(t, false, "contrast", oneThread, "-m", testmodels.Path(t, testmodels.Stories260K), "--a", sheFile, "--b", heFile, "--save-vectors", dir)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("non-empty directory: err = %v", err)
	}
	_, _, err = run(t, false, "contrast", oneThread, "-m", testmodels.Path(t, testmodels.Stories260K), "--a", sheFile, "--b", heFile, "--export-cvec", cvec)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing control vector: err = %v", err)
	}
}

func TestSteerOutputsAndErrors(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	cvec := filepath.Join(t.TempDir(), "she.gguf")
	contrastJSON(t, "--a", sheFile, "--b", heFile, "--paired", "--kinds", "resid_post", "--lens-k", "0", "--export-cvec", cvec)
	out, _, err := run(t, false, "steer", oneThread, "-m", model, "--cvec", cvec, "--scale", "2", "-n", "8", "--answer", " she", "Tom and Lily went to the park. Then")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"directions at layers 1-4", "scale 0 (no vector):", "scale 2:", "KL", "gains most\tloses most", "▁she", "\" she\""} {
		if !strings.Contains(out, want) {
			t.Errorf("steer output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, false, "steer", oneThread, "-m", model, "--cvec", cvec, "--scale", "-2:2:1", "-n", "6", "--layer-range", "2:3", "Once upon a time")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "directions at layers 2-3") || strings.Count(out, "\n-") < 2 || !strings.Contains(out, "scale\tKL\ttop-1\tcontinuation") {
		t.Errorf("sweep output:\n%s", out)
	}
	// a vector for another model: TinyStories-656K has d_model 128
	other := filepath.Join(t.TempDir(), "other.gguf")
	if _, _, err := run(t, false, "contrast", "--json", oneThread, "-m", testmodels.Path(t, testmodels.TinyStories656KF16), "--a", sheFile, "--b", heFile, "--kinds", "resid_post", "--lens-k", "0", "--export-cvec", other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"other model", []string{"--cvec", other, "x"}, "another model"},
		{"no cvec", []string{"x"}, "--cvec"},
		{"model as cvec", []string{"--cvec", model, "x"}, "not named direction.N"},
		{"bad scale", []string{"--cvec", cvec, "--scale", "1:x:2", "x"}, "FROM:TO:STEP"},
		{"bad range", []string{"--cvec", cvec, "--layer-range", "3", "x"}, "--layer-range"},
		{"empty range", []string{"--cvec", cvec, "--layer-range", "7:9", "x"}, "layer range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, append([]string{"steer", oneThread, "-m", model}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseScales(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"4", "[4]"},
		{"-4:4:2", "[-4 -2 0 2 4]"},
		{"0:1:0.1", "[0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1]"},
		{"0, 2,8", "[0 2 8]"},
	} {
		got, err := parseScales(tc.in)
		if err != nil || strings.Join(strings.Fields(strings.Trim(strings.ReplaceAll(strings.TrimSpace(fmtFloats(got)), ",", " "), "[]")), " ") != strings.Trim(tc.want, "[]") {
			t.Errorf("parseScales(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a", "1:0:1", "0:1:0", "0:1000:0.1"} {
		if _, err := parseScales(bad); err == nil {
			t.Errorf("parseScales(%q): no error", bad)
		}
	}
}

func fmtFloats(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.FormatFloat(x, 'g', -1, 64))
	}
	return strings.Join(s, " ")
}

func TestVecPairsAndErrors(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	vd := runJSON[VecJSON](t, "vec", "--json", oneThread, "-m", model, "--hooks", "resid_post.0,resid_post.3", "Tom ran|Tom sat", "Lily ran|Lily sat", "the dog|the cat")
	if len(vd.Hooks) != 2 || len(vd.Hooks[0].Cosine) != 3 {
		t.Fatalf("hooks %d, matrix %d", len(vd.Hooks), len(vd.Hooks[0].Cosine))
	}
	// At resid_post.0 the last token's residual is its embedding plus one
	// layer: " ran" − " sat" is nearly the same vector after Tom and Lily,
	// and unrelated to " dog" − " cat".
	var c [3][3]float64
	for i, row := range vd.Hooks[0].Cosine {
		for j, x := range row {
			if x == nil {
				t.Fatalf("cosine [%d][%d] undefined", i, j)
			}
			c[i][j] = *x
		}
	}
	// cos(v,v) is Σx²/(√Σx²)², 1 within float64 rounding (a few ulp, on
	// any CPU: the sums are Go float64 code); cos(a,b) == cos(b,a) bit for
	// bit by construction (diff.Cosine divides by one product).
	if c[0][1] < 0.8 || math.Abs(c[0][2]) > 0.5 || math.Abs(c[0][0]-1) > 1e-12 || c[1][0] != c[0][1] {
		t.Errorf("cosine at resid_post.0: %v", c)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"a|b", "c|d"}, "need a model"},
		{[]string{"nofile", "c|d"}, "not a prompt pair"},
		{[]string{"|b", "c|d"}, "both sides"},
	} {
		_, _, err := run(t, false, append([]string{"vec"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vec %v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}
