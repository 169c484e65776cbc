package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// Issue 14, parts 3 and 4: flag values that would hang or exhaust memory,
// and results that were wrong or misleading.

// TestLimitsContextSize: -c 2147483647 is refused at once from the size of
// its KV cache against the available memory (it grew to 21 GB before
// anything failed).
func TestLimitsContextSize(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	_, _, err := run(t, false, "capture", oneThread, "-m", model, "-c", "2147483647", "-o", filepath.Join(t.TempDir(), "x"), "hi")
	if err == nil || !strings.Contains(err.Error(), "KV cache of") || !strings.Contains(err.Error(), "TiB") || !strings.Contains(err.Error(), "-c") {
		t.Fatalf("-c 2147483647: err = %v, want the KV cache's size against the memory", err)
	}
}

// TestLimitsTopK: --top-k past the vocabulary shows the vocabulary, with a
// note, not a billion empty rows.
func TestLimitsTopK(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	out, _, err := run(t, false, "compare", oneThread, "-m", model, "--top-k", "100000", "--no-lens", "--no-ranking", "--no-layers", "--no-neurons", "The cat", "The dog")
	if err != nil {
		t.Fatal(err)
	}
	_, preds, _ := strings.Cut(out, "== predictions")
	preds, _, _ = strings.Cut(preds, "\n== ")
	if rows := strings.Count(preds, "\n"); rows > 512+3 {
		t.Errorf("--top-k 100000 printed %d prediction rows for a vocabulary of 512", rows)
	}
	if !strings.Contains(out, "the vocabulary has 512 tokens") {
		t.Errorf("no note about the vocabulary:\n%.2000s", out)
	}
}

// TestLimitsThreads: -t far above the CPUs is clamped with a warning, and
// the run finishes (-t 512 on 2 cores took minutes).
func TestLimitsThreads(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	n := strconv.Itoa(llamacpp.CPUs() * 64)
	cvec := filepath.Join(t.TempDir(), "hs.gguf")
	if _, _, err := run(t, false, "contrast", oneThread, "-m", model, "--a", sheFile, "--b", heFile, "--paired", "--lens-k", "0", "--export-cvec", cvec); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"capture", []string{"capture", "-t", n, "-m", model, "-o", filepath.Join(t.TempDir(), "x"), "hi"}},
		{"steer", []string{"steer", "-t", n, "-m", model, "--cvec", cvec, "-n", "1", "hi"}},
		{"vec", []string{"vec", "-t", n, "-m", model, "he ran|she ran", "he sat|she sat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := run(t, false, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(errOut, "more threads than this machine's") || !strings.Contains(errOut, "using "+strconv.Itoa(llamacpp.CPUs())) {
				t.Errorf("-t %s: stderr %q, want a warning", n, errOut)
			}
		})
	}
}

// TestBOSHonest: --bos yes adds BOS for GPT-2 and GPT-NeoX vocabularies
// (llama.cpp ignored it), and tokenize says where a BOS came from: added,
// from the text with --special, or both (two BOS, with a warning).
func TestBOSHonest(t *testing.T) {
	type doc struct {
		Prompts []tokenizedJSON `json:"prompts"`
	}
	for _, tc := range []struct {
		vocab string
		bos   int32
	}{{testmodels.VocabGPT2, 50256}, {testmodels.VocabGPTNeoX, 0}} {
		d := runJSON[doc](t, "tokenize", "--json", "--bos", "yes", "-m", testmodels.Path(t, tc.vocab), "Hello world")
		p := d.Prompts[0]
		if !p.Added || len(p.Tokens) != 3 || p.Tokens[0].ID != tc.bos {
			t.Errorf("%s --bos yes: %+v, want BOS %d added in front of 2 tokens", tc.vocab, p, tc.bos)
		}
	}
	spm := testmodels.Path(t, testmodels.VocabLlamaSPM)
	d := runJSON[doc](t, "tokenize", "--json", "--special", "--bos", "no", "-m", spm, "<s>Hello")
	if p := d.Prompts[0]; p.Added || !p.FromText || p.Tokens[0].ID != 1 {
		t.Errorf("<s> from the text with --bos no: %+v, want bos false and bos_from_text", p)
	}
	d = runJSON[doc](t, "tokenize", "--json", "--special", "-m", spm, "<s>Hello")
	if p := d.Prompts[0]; !p.Added || !p.FromText || len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "two BOS") {
		t.Errorf("<s> from the text after an added BOS: %+v, want both and a warning", p)
	}
	out, _, err := run(t, false, "tokenize", "--special", "--bos", "no", "-m", spm, "<s>Hello")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "(BOS added)") || !strings.Contains(out, "(BOS from the text, none added)") {
		t.Errorf("tokenize says BOS added for a <s> from the text:\n%s", out)
	}
}

// TestCompareIdenticalIsExactlyZero: comparing a prompt with itself gives
// exact zeros everywhere and says so: no bars, no lens tokens, no neurons
// (before: rounding noise of 1e-6 ranked as differences).
func TestCompareIdenticalIsExactlyZero(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	const p = "Once upon a time, there was a little girl"
	doc := compareJSON(t, "-m", model, "--pos", "all", p, p)
	for _, c := range doc.Components {
		if c.L2 != 0 || c.RelL2 != 0 {
			t.Errorf("%s: l2 %v, rel %v, want exactly 0", c.Hook, c.L2, c.RelL2)
		}
	}
	for _, l := range doc.Lens {
		if len(l.AMinusB) != 0 || len(l.BMinusA) != 0 {
			t.Errorf("layer %d: lens of A−B %v, B−A %v, want none", l.Layer, l.AMinusB, l.BMinusA)
		}
	}
	if doc.Neurons == nil || len(doc.Neurons.Neurons) != 0 {
		t.Errorf("neurons %+v, want none", doc.Neurons)
	}
	if !slices.ContainsFunc(doc.Warnings, func(w string) bool { return strings.Contains(w, "exactly 0") }) {
		t.Errorf("warnings %q do not say the prompts are the same", doc.Warnings)
	}
	// the same prompt at two positions does differ
	doc = compareJSON(t, "-m", model, "--pos", "2:3", p, p)
	if doc.Components[0].L2 == 0 || slices.ContainsFunc(doc.Warnings, func(w string) bool { return strings.Contains(w, "exactly 0") }) {
		t.Errorf("positions 2 and 3 of one prompt: l2 %v, warnings %q", doc.Components[0].L2, doc.Warnings)
	}
	out, _, err := run(t, true, "compare", oneThread, "-m", model, p, p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "█") {
		t.Errorf("identical prompts show bars:\n%s", out)
	}
}

// TestContrastIdenticalPairsSkipped: pairs that tokenize identically are
// skipped at every position, as the docs say (they were kept at the
// default position).
func TestContrastIdenticalPairsSkipped(t *testing.T) {
	pairs := writeFile(t, filepath.Join(t.TempDir(), "p.jsonl"),
		`{"a":"The boy ran","b":"The boy ran"}`+"\n"+`{"a":"He said","b":"She said"}`+"\n"+`{"a":"The man sat","b":"The woman sat"}`+"\n")
	doc := contrastJSON(t, "--pairs", pairs, "--lens-k", "0", "--kinds", "resid_post")
	if doc.A.Rows != 2 || doc.B.Rows != 2 {
		t.Errorf("rows A %d, B %d, want 2 (the identical pair skipped)", doc.A.Rows, doc.B.Rows)
	}
	if !slices.ContainsFunc(doc.Warnings, func(w string) bool { return strings.Contains(w, "were skipped") }) {
		t.Errorf("warnings %q", doc.Warnings)
	}
}

// TestContrastZeroSpread: sets without spread (one prompt repeated) show
// the separation ∞ (null) at every hook, never the ratio of two rounding
// errors (1e6..1e16).
func TestContrastZeroSpread(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, filepath.Join(dir, "a.txt"), "The boy ran\nThe boy ran\nThe boy ran\n")
	b := writeFile(t, filepath.Join(dir, "b.txt"), "The girl ran\nThe girl ran\nThe girl ran\n")
	doc := contrastJSON(t, "--a", a, "--b", b, "--lens-k", "0")
	for _, c := range doc.Components {
		if c.Separation != nil || c.Spread == nil || *c.Spread != 0 {
			t.Errorf("%s: separation %v, spread %v, want null (∞) and 0", c.Hook, ptr(c.Separation), ptr(c.Spread))
		}
	}
}

func ptr(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestAnswerMergingRefused: an answer that merges with the end of the
// prompt ("gi" + "rl" is "girl") is refused with the reason; it was scored
// as " rl".
func TestAnswerMergingRefused(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	_, _, err := run(t, false, "compare", oneThread, "-m", model, "--answer", "rl", "There was a little gi", "There was a little bo")
	if err == nil || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), "merges with the end of the prompt") || !strings.Contains(err.Error(), `reads " rl"`) {
		t.Fatalf("err = %v, want a usage error about the merge", err)
	}
}

// TestNonFiniteModel: a model that produces NaN is named as such, with
// the layer, by compare (--json too: it failed with "json: unsupported
// value: NaN"), patch (which blamed its metric), contrast (which blamed
// the directions) and steer (which blamed the scale); capture writes the
// values and warns.
func TestNonFiniteModel(t *testing.T) {
	model := benchmodels.Overflow(t)
	want := func(what string, err error) {
		t.Helper()
		if err == nil || ExitCode(err) != ExitError || !strings.Contains(err.Error(), "overflow.gguf produces") || !strings.Contains(err.Error(), "blocks.1.hook_mlp_out") {
			t.Errorf("%s: err = %v, want the model named as producing NaN from blocks.1.hook_mlp_out", what, err)
		}
	}
	_, _, err := run(t, false, "compare", oneThread, "--json", "-m", model, "She ran", "He ran")
	want("compare --json", err)
	_, _, err = run(t, false, "patch", oneThread, "-m", model, "--clean", "She ran", "--corrupt", "He ran", "--answer", " she", "--pos", "last")
	want("patch", err)
	_, _, err = run(t, false, "contrast", oneThread, "-m", model, "--a", sheFile, "--b", heFile, "--paired", "--export-cvec", filepath.Join(t.TempDir(), "v.gguf"))
	want("contrast", err)
	cvec := filepath.Join(t.TempDir(), "v.gguf")
	dir0 := make([]float32, 64)
	dir0[0] = 1
	if err := (&contrast.ControlVector{Directions: map[int][]float32{1: dir0}, Offset: -1}).WriteFile(cvec, false); err != nil {
		t.Fatal(err)
	}
	// steer blamed the scale ("use a smaller scale")
	_, _, err = run(t, false, "steer", oneThread, "-m", model, "--cvec", cvec, "-n", "1", "She ran")
	want("steer", err)
	dir := filepath.Join(t.TempDir(), "acts")
	_, errOut, err := run(t, false, "capture", oneThread, "-m", model, "--hooks", "mlp_out", "-o", dir, "She ran")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "warning: overflow.gguf produces") || !strings.Contains(errOut, "blocks.1.hook_mlp_out") {
		t.Errorf("capture stderr %q, want a warning naming blocks.1.hook_mlp_out", errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "blocks.1.hook_mlp_out.npy")); err != nil {
		t.Error("capture did not write the values")
	}
}

// TestSmallInputs: inputs that were taken silently for something else.
func TestSmallInputs(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	for _, tc := range []struct {
		name string
		args []string
		want string // "" for success
	}{
		{"spaces are a prompt", []string{"compare", oneThread, "-m", model, "--no-lens", "   ", "The dog"}, ""},
		{"spaces are a capture", []string{"capture", oneThread, "-m", model, "-o", filepath.Join(t.TempDir(), "x"), "   "}, ""},
		{"pos -0", []string{"compare", "-m", model, "--pos", "-0", "a", "b"}, `"-0" is not a position`},
		{"pos -0 in a pair", []string{"compare", "-m", model, "--pos", "1:-0", "a", "b"}, `"-0" is not a position`},
		{"pos empty", []string{"compare", "-m", model, "--pos", "", "a", "b"}, "--pos is empty"},
		{"contrast pos -0", []string{"contrast", "-m", model, "--a", sheFile, "--b", heFile, "--pos", "-0"}, `"-0" is not a position`},
		{"contrast pos empty", []string{"contrast", "-m", model, "--a", sheFile, "--b", heFile, "--pos", " "}, "--pos is empty"},
		{"synth layers 0", []string{"synth", "-o", filepath.Join(t.TempDir(), "s.gguf"), "--layers", "0"}, "--layers 0"},
		{"synth d-model 0", []string{"synth", "-o", filepath.Join(t.TempDir(), "s.gguf"), "--d-model", "0"}, "--d-model 0"},
		{"synth tied untied", []string{"synth", "-o", filepath.Join(t.TempDir(), "s.gguf"), "--tied", "--untied"}, "contradict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, tc.args...)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v, want success", err)
			case tc.want != "" && (err == nil || ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want a usage error mentioning %q", err, tc.want)
			}
		})
	}
}

// copyGGUF copies the GGUF file src to dst without the metadata keys
// drop, tensors included.
func copyGGUF(t *testing.T, src, dst string, drop ...string) string {
	t.Helper()
	f, err := models.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	w := &models.Writer{}
	for _, kv := range f.KVs {
		if slices.Contains(drop, kv.Key) {
			continue
		}
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		off := f.DataOffset + int64(ti.Offset)
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, raw[off:off+int64(ti.Size)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFile(dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestInspectUnsetValues: a value the file does not set is said to be
// unknown or left out, never printed as nothing ("file type " at the end
// of a line, name "", "( tokenizer)", model hint "").
func TestInspectUnsetValues(t *testing.T) {
	dir := t.TempDir()
	stories := testmodels.Path(t, testmodels.Stories260K) // no general.file_type
	bare := copyGGUF(t, stories, filepath.Join(dir, "bare.gguf"), "general.name", "general.file_type", "tokenizer.ggml.model")
	vocab := copyGGUF(t, testmodels.Path(t, testmodels.VocabLlamaSPM), filepath.Join(dir, "vocab.gguf"), "tokenizer.ggml.model")
	cvec := filepath.Join(dir, "v.gguf")
	if err := (&contrast.ControlVector{Directions: map[int][]float32{1: {1, 2}}, Offset: -1}).WriteFile(cvec, false); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"stories260K", stories, []string{`architecture llama "llama", 5 layers`, "(llama tokenizer)", "file type unknown (general.file_type not set)\n"}},
		{"no name, tokenizer or file type", bare, []string{"architecture llama, 5 layers", "(tokenizer unknown: tokenizer.ggml.model not set)", "file type unknown (general.file_type not set)\n"}},
		{"vocab only, no tokenizer", vocab, []string{"vocab only (no weights): tokenizer unknown: tokenizer.ggml.model not set, 32000 tokens"}},
		{"control vector without a model hint", cvec, []string{"at layers 1, no model hint (controlvector.model_hint not set)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(t, false, "inspect", tc.path)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, bad := range []string{"file type \n", `""`, "( tokenizer)", " tokenizer,", "model hint \"\""} {
				if strings.Contains(out, bad) {
					t.Errorf("output holds the empty value %q:\n%s", bad, out)
				}
			}
		})
	}
}
