package cli

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// run executes lldiff with args and returns stdout, stderr and the error.
func run(t testing.TB, tty bool, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	io := &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, IsTerminal: tty}
	root := NewRootCmd(io)
	root.SetArgs(NormalizeArgs(args))
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func TestTokenizeKnownIDs(t *testing.T) {
	// Token ids of the real tokenizers, as every Llama-2 / GPT-2 user
	// knows them: "Hello world" is [1, 15043, 3186] in Llama-2 (BOS
	// added) and [15496, 995] in GPT-2 (no BOS).
	for _, tc := range []struct {
		vocab string
		want  []int32
		bos   bool
	}{
		{testmodels.VocabLlamaSPM, []int32{1, 15043, 3186}, true},
		{testmodels.VocabGPT2, []int32{15496, 995}, false},
	} {
		out, _, err := run(t, false, "tokenize", "--json", "-m", testmodels.Path(t, tc.vocab), "Hello world")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Prompts []tokenizedJSON `json:"prompts"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		p := doc.Prompts[0]
		if p.Added != tc.bos || len(p.Tokens) != len(tc.want) {
			t.Fatalf("%s: got %+v, want ids %v", tc.vocab, p, tc.want)
		}
		for i, id := range tc.want {
			if p.Tokens[i].ID != id {
				t.Errorf("%s: token %d is %d, want %d", tc.vocab, i, p.Tokens[i].ID, id)
			}
		}
		if p.Tokens[len(p.Tokens)-1].Piece != "▁world" {
			t.Errorf("%s: last piece %q, want ▁world (space shown as ▁)", tc.vocab, p.Tokens[len(p.Tokens)-1].Piece)
		}
	}
}

// TestTokenizeExplainsSplits checks the case every SentencePiece user trips
// on: a prompt starting with a space gets a lone "▁" token, and " sad" is
// two pieces in stories260K while " happy" is one.
func TestTokenizeExplainsSplits(t *testing.T) {
	out, _, err := run(t, false, "tokenize", "-m", testmodels.Path(t, testmodels.Stories260K), " happy", " sad")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`" happy" → 3 tokens (BOS added)`,
		`" sad" → 4 tokens (BOS added)`,
		`a lone space token "▁" comes first`,
		"▁ | ▁sa | d",
		"token counts differ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, false, "tokenize", "--bos", "no", "-m", testmodels.Path(t, testmodels.Stories260K), "happy")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "<s>") || !strings.Contains(out, "no BOS") {
		t.Errorf("--bos no still shows BOS:\n%s", out)
	}
}

func TestCaptureWritesNpyAndIndex(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	dir := filepath.Join(t.TempDir(), "acts")
	prompt := "Lily saw a big dog in the park"
	out, _, err := run(t, true, "capture", "-m", model, "--hooks", "resid_post,attn_out.1,mlp_out.-1", "-o", dir, prompt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote 7 activations") {
		t.Errorf("unexpected output:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx CaptureIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Files) != 7 {
		t.Fatalf("%d files in index, want 7 (5 resid_post + attn_out.1 + mlp_out.4)", len(idx.Files))
	}
	// the files hold what the library captures
	m, err := llamacpp.LoadModel(model, llamacpp.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids, _ := m.Tokenize(prompt, llamacpp.TokenizeOptions{})
	if len(idx.Tokens) != len(ids) || idx.Tokens[0].Piece != "<s>" {
		t.Fatalf("index tokens %+v", idx.Tokens)
	}
	ctx, err := m.NewContext(llamacpp.ContextParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	var hooks []models.Hook
	for _, f := range idx.Files {
		hs, err := models.ParseHook(f.Hook, m.NLayer())
		if err != nil {
			t.Fatal(err)
		}
		hooks = append(hooks, hs...)
	}
	caches, err := ctx.Run([][]int32{ids}, llamacpp.RunOptions{Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range idx.Files {
		fh, err := os.Open(filepath.Join(dir, f.File))
		if err != nil {
			t.Fatal(err)
		}
		shape, data, err := npy.Read(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(shape) != 2 || shape[0] != len(ids) || shape[1] != m.NEmbd() || f.Shape[0] != shape[0] {
			t.Fatalf("%s: shape %v, index %v", f.File, shape, f.Shape)
		}
		a, _ := caches[0].At(hooks[i])
		for k := range data {
			if data[k] != a.Data[k] {
				t.Fatalf("%s: value %d is %v, capture gives %v", f.File, k, data[k], a.Data[k])
			}
		}
	}
	if py := npy.NumpyPython(); py != "" {
		script := `import numpy, json, sys, os
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
for f in idx["files"]:
    a = numpy.load(os.path.join(d, f["file"]))
    assert a.dtype == numpy.float32 and list(a.shape) == f["shape"], (f, a.shape)
print("ok", len(idx["files"]))`
		o, err := exec.Command(py, "-c", script, dir).CombinedOutput()
		if err != nil || !strings.Contains(string(o), "ok 7") {
			t.Errorf("numpy could not read the capture: %v\n%s", err, o)
		}
	}
	// a second capture into the same directory is refused and leaves the
	// files alone
	before, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	_, _, err = run(t, false, "capture", "-m", model, "-o", dir, "another prompt")
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("non-empty directory: err = %v, want a hint to --force", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if !bytes.Equal(before, after) {
		t.Error("refused capture changed index.json")
	}
	if _, _, err := run(t, false, "capture", "-m", model, "-o", dir, "--force", "another prompt"); err != nil {
		t.Errorf("--force: %v", err)
	}
}

// corrupt returns a copy of src in the test's temp dir with fix applied.
func corrupt(t *testing.T, src string, fix func([]byte) []byte) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bad.gguf")
	if err := os.WriteFile(p, fix(b), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ggufString finds the GGUF string s (u64 length + bytes) in b and returns
// the offset just after it.
func ggufString(t *testing.T, b []byte, s string) int {
	t.Helper()
	pat := binary.LittleEndian.AppendUint64(nil, uint64(len(s)))
	pat = append(pat, s...)
	i := bytes.Index(b, pat)
	if i < 0 {
		t.Fatalf("%q not found", s)
	}
	return i + len(pat)
}

func TestBadInputs(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	tmp := t.TempDir()
	text := filepath.Join(tmp, "notes.txt")
	os.WriteFile(text, []byte("these are my notes, not a model\n"), 0o644)
	truncated := corrupt(t, model, func(b []byte) []byte { return b[:len(b)/2] })
	badOffset := corrupt(t, model, func(b []byte) []byte {
		// tensor info: name, n_dims u32, dims u64×1, type u32, offset u64
		i := ggufString(t, b, "output_norm.weight") + 4 + 8 + 4
		binary.LittleEndian.PutUint64(b[i:], 1<<40)
		return b
	})
	badArch := corrupt(t, model, func(b []byte) []byte {
		// general.architecture: key, type u32 (string), value "llama"
		i := ggufString(t, b, "general.architecture") + 4
		copy(b[i+8:], "bloom")
		return b
	})
	long := strings.Repeat("the cat sat on the mat and ", 40)
	for _, tc := range []struct {
		name string
		args []string
		want []string // the error must name the problem and the fix
	}{
		{"missing file", []string{"capture", "-m", filepath.Join(tmp, "nope.gguf"), "-o", tmp + "/o1", "hi"}, []string{"nope.gguf"}},
		{"directory", []string{"capture", "-m", tmp, "-o", tmp + "/o2", "hi"}, []string{"directory"}},
		{"text file", []string{"capture", "-m", text, "-o", tmp + "/o3", "hi"}, []string{"not a GGUF"}},
		{"truncated", []string{"capture", "-m", truncated, "-o", tmp + "/o4", "hi"}, []string{"truncated"}},
		{"bad tensor offset", []string{"capture", "-m", badOffset, "-o", tmp + "/o5", "hi"}, []string{"output_norm.weight"}},
		{"unsupported architecture", []string{"capture", "-m", badArch, "-o", tmp + "/o6", "hi"}, []string{"bloom", "llama"}},
		{"no model", []string{"capture", "-o", tmp + "/o7", "hi"}, []string{"-m"}},
		{"empty prompt", []string{"capture", "-m", model, "-o", tmp + "/o8", "--prompt-file", writeFile(t, filepath.Join(tmp, "empty.txt"), "\n")}, []string{"empty"}},
		{"prompt longer than context", []string{"capture", "-m", model, "-c", "64", "-o", tmp + "/o9", long}, []string{"context", "-c"}},
		{"prompt longer than training context", []string{"capture", "-m", model, "-o", tmp + "/o9b", strings.Repeat(long, 10)}, []string{"trained", "-c"}},
		{"unknown hook", []string{"capture", "-m", model, "--hooks", "resid_psot", "-o", tmp + "/o10", "hi"}, []string{"resid_psot", "resid_post"}},
		{"layer out of range", []string{"capture", "-m", model, "--hooks", "resid_post.7", "-o", tmp + "/o11", "hi"}, []string{"out of range", "5 layers"}},
		{"bad kv type", []string{"capture", "-m", model, "--kv-type", "q4", "-o", tmp + "/o12", "hi"}, []string{"f32", "f16"}},
		{"vocab-only model", []string{"capture", "-m", testmodels.Path(t, testmodels.VocabLlamaSPM), "-o", tmp + "/o13", "hi"}, []string{"weights"}},
		{"inspect text file", []string{"inspect", text}, []string{"not a GGUF"}},
		{"tokenize missing model", []string{"tokenize", "-m", filepath.Join(tmp, "nope.gguf"), "hi"}, []string{"nope.gguf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if ExitCode(&UsageError{}) != ExitUsage || ExitCode(os.ErrNotExist) != ExitError {
		t.Error("exit codes")
	}
}

func TestInspectJSON(t *testing.T) {
	out, _, err := run(t, false, "inspect", "--json", testmodels.Path(t, testmodels.TinyStories656KQ8))
	if err != nil {
		t.Fatal(err)
	}
	var doc inspectJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	// MANIFEST.md: llama, 2 layers, d_model 128, 8 heads (4 kv), d_ff 384,
	// vocab 2048, tied, Q8_0 matrices.
	if doc.Arch != "llama" || doc.Layers != 2 || doc.DModel != 128 || doc.Heads != 8 || doc.KVHeads != 4 ||
		doc.DFF != 384 || doc.Vocab != 2048 || !doc.Tied || doc.TensorTypes[0].Type != "Q8_0" {
		t.Errorf("inspect: %+v", doc)
	}
	if len(doc.Hooks) != 8 || doc.Hooks[len(doc.Hooks)-1].Hook != "logits" {
		t.Errorf("hooks: %+v", doc.Hooks)
	}
}

func TestSynthCapture(t *testing.T) {
	dir := t.TempDir()
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	for _, typ := range []string{"F32", "F16", "Q8_0", "Q4_0"} {
		t.Run(typ, func(t *testing.T) {
			p := filepath.Join(dir, typ+".gguf")
			if _, _, err := run(t, false, "synth", "-o", p, "--type", typ, "--vocab", vocab, "--layers", "3", "--d-model", "64", "--heads", "4", "--kv-heads", "2", "--d-ff", "96"); err != nil {
				t.Fatal(err)
			}
			out, _, err := run(t, false, "inspect", "--json", p)
			if err != nil {
				t.Fatal(err)
			}
			var doc inspectJSON
			json.Unmarshal([]byte(out), &doc)
			if doc.Layers != 3 || doc.DModel != 64 || doc.KVHeads != 2 || doc.Vocab != 32000 || doc.RunnableProblem != "" {
				t.Fatalf("synthetic model: %+v", doc)
			}
			o := filepath.Join(dir, typ+"-acts")
			if _, _, err := run(t, false, "capture", "-m", p, "--hooks", "resid_post,mlp_out", "-o", o, "Hello world"); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(filepath.Join(o, "blocks.2.hook_resid_post.npy"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			shape, data, err := npy.Read(f)
			if err != nil || shape[0] != 3 || shape[1] != 64 {
				t.Fatalf("shape %v err %v", shape, err)
			}
			if diff.Norm(data[128:]) == 0 || diff.Norm(data[128:]) != diff.Norm(data[128:]) {
				t.Errorf("activation norm %v", diff.Norm(data[128:]))
			}
		})
	}
	// an existing file is not replaced without --force
	p := filepath.Join(dir, "F32.gguf")
	st, _ := os.Stat(p)
	if _, _, err := run(t, false, "synth", "-o", p, "--vocab", vocab); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("overwrite: %v", err)
	}
	if st2, _ := os.Stat(p); st2.ModTime() != st.ModTime() {
		t.Error("synth replaced an existing file")
	}
}

func TestDevices(t *testing.T) {
	out, _, err := run(t, false, "devices", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Devices []deviceJSON `json:"devices"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	cpu := false
	for _, d := range doc.Devices {
		if d.Type == "CPU" && d.TotalBytes > 0 {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("no CPU device with memory in %s", out)
	}
}

// TestSynthKQuants writes K-quant models through llama.cpp's quantizer
// (rows must be multiples of 256) and runs them.
func TestSynthKQuants(t *testing.T) {
	dir := t.TempDir()
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	for _, tc := range []struct {
		typ  string
		want string // the type most matrices get
	}{{"Q4_K", "Q4_K"}, {"Q6_K", "Q6_K"}} {
		p := filepath.Join(dir, tc.typ+".gguf")
		if _, _, err := run(t, false, "synth", "-o", p, "--type", tc.typ, "--pure", "--vocab", vocab, "--layers", "2", "--d-model", "256", "--heads", "4", "--d-ff", "512"); err != nil {
			t.Fatal(err)
		}
		out, _, err := run(t, false, "inspect", "--json", p)
		if err != nil {
			t.Fatal(err)
		}
		var doc inspectJSON
		json.Unmarshal([]byte(out), &doc)
		if len(doc.TensorTypes) == 0 || doc.TensorTypes[0].Type != tc.want || doc.RunnableProblem != "" {
			t.Fatalf("%s: tensor types %+v, problem %q", tc.typ, doc.TensorTypes, doc.RunnableProblem)
		}
		if _, _, err := run(t, false, "capture", "-m", p, "-t", "1", "--hooks", "resid_post.-1", "-o", filepath.Join(dir, tc.typ+"-acts"), "Hello world"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := run(t, false, "synth", "-o", filepath.Join(dir, "x.gguf"), "--type", "Q3_K", "--vocab", vocab); err == nil || !strings.Contains(err.Error(), "Q4_K") {
		t.Errorf("unknown type: %v", err)
	}
}

// TestTokenizeByteTokens: an emoji is split by SentencePiece into byte
// tokens; each shows as <0xNN> and its raw byte is in the JSON.
func TestTokenizeByteTokens(t *testing.T) {
	out, _, err := run(t, false, "tokenize", "--json", "-m", testmodels.Path(t, testmodels.VocabLlamaSPM), "🦙")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Prompts []tokenizedJSON `json:"prompts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, tok := range doc.Prompts[0].Tokens {
		if tok.Kind != "byte" {
			continue
		}
		if !strings.HasPrefix(tok.Piece, "<0x") || tok.Bytes == "" {
			t.Errorf("byte token %+v: want a <0xNN> piece and raw bytes", tok)
		}
		b, err := hex.DecodeString(tok.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if string(raw) != "🦙" {
		t.Errorf("byte tokens give %q, want the emoji's 4 bytes", raw)
	}
}

func TestTokenizeJSONEmptySplitWords(t *testing.T) {
	out, _, err := run(t, false, "tokenize", "--json", "-m", testmodels.Path(t, testmodels.VocabGPT2), "Hello")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"split_words": []`) {
		t.Errorf("split_words should be an empty list:\n%s", out)
	}
}
