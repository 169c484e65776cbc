package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// Strings from files reach the terminal escaped (issue 14, part 5): a
// crafted GGUF, control vector, prompt file or index.json must not make
// lldiff send escape sequences (window title, colours, clipboard) or
// Unicode direction overrides to the terminal.

// evil are the sequences the crafted files hold: OSC (set the window
// title, ended by BEL), SGR (red), a right-to-left override and a C1 CSI.
var evil = []string{"\x1b]0;pwned\x07", "\x1b[31m", "\u202e", "\u009b2J"}

// rawControl returns a description of the first raw control sequence in
// s, or "".
func rawControl(s string) string {
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\u009b"} {
		if i := strings.Index(s, bad); i >= 0 {
			return fmt.Sprintf("%q at byte %d: …%q…", bad, i, s[max(0, i-40):min(len(s), i+40)])
		}
	}
	return ""
}

// craftedModel writes a runnable model whose general.name, BOS token and
// every other normal token hold evil sequences, and returns its path.
// Prompts still tokenize (through byte tokens); the predictions, pieces
// and names lldiff prints are all crafted.
func craftedModel(t *testing.T, dir string) string {
	t.Helper()
	src, err := models.Open(testmodels.Path(t, testmodels.Stories260K))
	if err != nil {
		t.Fatal(err)
	}
	w := &models.Writer{}
	if err := w.AddKV("general.architecture", "llama"); err != nil {
		t.Fatal(err)
	}
	for _, kv := range src.KVs {
		if !strings.HasPrefix(kv.Key, "tokenizer.") {
			continue
		}
		v := kv.Value
		if kv.Key == "tokenizer.ggml.tokens" {
			toks := append([]string(nil), v.([]string)...)
			types, _ := src.Get("tokenizer.ggml.token_type")
			for i := range toks {
				switch typ := types.([]int32)[i]; {
				case i == 1: // <s>, a control token: printed by its text
					toks[i] += evil[0]
				case typ == 1 && i%2 == 0:
					toks[i] += evil[i/2%len(evil)]
				}
			}
			v = toks
		}
		if err := w.AddKV(kv.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	vocab := filepath.Join(dir, "vocab.gguf")
	if err := w.WriteFile(vocab); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "crafted.gguf")
	spec := models.SynthSpec{Name: "synthetic " + strings.Join(evil, " "), NLayer: 3, DModel: 64, NHead: 4, DFF: 128, NCtx: 256, VocabPath: vocab, Seed: 7}
	if err := models.WriteSynthetic(model, spec); err != nil {
		t.Fatal(err)
	}
	return model
}

// TestFileStringsEscaped runs every command on crafted files, on a
// terminal and off one, and checks that nothing raw reaches stdout or
// stderr, nor the error main prints.
func TestFileStringsEscaped(t *testing.T) {
	dir := t.TempDir()
	model := craftedModel(t, dir)
	// the model is crafted as intended: its vocabulary holds the sequences
	if out, _, err := run(t, false, "tokenize", "--json", "-m", model, "hi"); err != nil || !strings.Contains(out, `\u001b]0;pwned`) {
		t.Fatalf("crafted model: %v\n%s", err, out)
	}
	cv := &contrast.ControlVector{
		ModelHint: "llama" + evil[1], Offset: 0,
		Directions: map[int][]float32{1: make([]float32, 64), 2: make([]float32, 64)},
		Meta:       map[string]string{"a": "she" + evil[0], "b": evil[1] + "he", "method": "mean_diff" + evil[2], "norm": evil[3]},
	}
	for i := range cv.Directions[1] {
		cv.Directions[1][i], cv.Directions[2][i] = float32(i%3)-1, 0.5
	}
	// file names are text too (from a directory listing, a glob)
	cvec := filepath.Join(dir, "v"+evil[1]+".gguf")
	if err := cv.WriteFile(cvec, false); err != nil {
		t.Fatal(err)
	}
	prompt := writeFile(t, filepath.Join(dir, "prompt.txt"), "Once upon a time "+evil[0]+" there"+evil[2])
	setA := writeFile(t, filepath.Join(dir, "a.txt"), "Lily said "+evil[0]+"\nLily ran"+evil[1]+"\n")
	setB := writeFile(t, filepath.Join(dir, "b.txt"), "Tom said "+evil[2]+"\nTom ran"+evil[3]+"\n")

	// a --save-vectors directory whose index.json names crafted files
	vecs := filepath.Join(dir, "vecs"+evil[2])
	os.Mkdir(vecs, 0o755)
	v := make([]float32, 64)
	v[3] = 1
	if err := npy.WriteFile(filepath.Join(vecs, "ok.npy"), []int{64}, v); err != nil {
		t.Fatal(err)
	}
	writeIndex := func(files ...analysis.VectorFile) {
		b, _ := json.Marshal(analysis.VectorIndex{Model: evil[0], A: evil[1], B: evil[2], Files: files})
		writeFile(t, filepath.Join(vecs, "index.json"), string(b))
	}
	good := analysis.VectorFile{File: "ok.npy", Hook: "blocks.1.hook_resid_post", Layer: 1, Method: "mean_diff", Shape: []int{64}}
	missing := analysis.VectorFile{File: "gone" + evil[0] + ".npy", Hook: "blocks.2.hook_resid_post", Layer: 2, Method: "mean_diff"}
	badHook := analysis.VectorFile{File: "ok.npy", Hook: "blocks.2.hook" + evil[1], Layer: 2, Method: "mean_diff"}
	outside := analysis.VectorFile{File: "../x" + evil[2] + ".npy", Hook: "blocks.2.hook_resid_post", Layer: 2, Method: "mean_diff"}

	m := []string{"-t1", "-m", model}
	cmds := []struct {
		name  string
		setup func()
		args  []string
		fails bool // ends in an error, whose message is checked
		// bland: the output quotes no crafted text (patch prints the
		// answers' pieces, plain bytes here), so only the absence of raw
		// sequences is checked
		bland bool
	}{
		{name: "inspect model", args: []string{"inspect", model}},
		{name: "inspect cvec", args: []string{"inspect", cvec}},
		{name: "tokenize", args: []string{"tokenize", "-m", model, "hi", evil[0]}},
		{name: "capture", args: append(append([]string{"capture"}, m...), "--hooks", "resid_post", "-o", filepath.Join(dir, "cap"), "--prompt-file", prompt)},
		{name: "compare", args: append(append([]string{"compare"}, m...), "--answer", " hi", "--neurons", "3", "Lily said hi", "Tom said hi"+evil[0])},
		{name: "patch", args: append(append([]string{"patch"}, m...), "--answer", "a", "--wrong", "b", "--kinds", "resid_post", "--pos", "last", "--clean", "Lily said hi", "--corrupt", "Tom said hi"+evil[1]), bland: true},
		{name: "contrast", args: append(append([]string{"contrast"}, m...), "--a", setA, "--b", setB, "--kinds", "resid_post", "--paired")},
		{name: "steer", args: append(append([]string{"steer"}, m...), "--cvec", cvec, "--scale", "0,4", "-n", "3", "--answer", " hi", "--prompt-file", prompt)},
		{name: "steer sweep", args: append(append([]string{"steer"}, m...), "--cvec", cvec, "--scale", "0:2:1", "-n", "3", "x")},
		{name: "vec", setup: func() { writeIndex(good) }, args: []string{"vec", vecs, cvec}},
		{name: "vec three", setup: func() { writeIndex(good) }, args: []string{"vec", "--cvec-layer-offset", "0", vecs, cvec, filepath.Join(vecs, "ok.npy")}},
		{name: "vec missing file", setup: func() { writeIndex(good, missing) }, args: []string{"vec", vecs, cvec}, fails: true},
		{name: "vec bad hook", setup: func() { writeIndex(good, badHook) }, args: []string{"vec", vecs, cvec}, fails: true},
		{name: "vec outside", setup: func() { writeIndex(good, outside) }, args: []string{"vec", vecs, cvec}, fails: true},
		{name: "vec pairs", args: append(append([]string{"vec"}, m...), "Lily"+evil[0]+"|Tom", "Lily|Tom"+evil[1])},
	}
	for _, c := range cmds {
		for _, tty := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/tty=%v", c.name, tty), func(t *testing.T) {
				if c.setup != nil {
					c.setup()
				}
				os.RemoveAll(filepath.Join(dir, "cap"))
				out, errOut, err := run(t, tty, c.args...)
				// what main prints for an error
				var msg bytes.Buffer
				if err != nil {
					PrintError(&msg, err)
				}
				// lldiff's own progress line ends by erasing itself
				errOut = strings.ReplaceAll(errOut, "\r\x1b[K", "\r")
				for name, s := range map[string]string{"stdout": out, "stderr": errOut, "error": msg.String()} {
					if bad := rawControl(s); bad != "" {
						t.Errorf("%s: raw %s", name, bad)
					}
				}
				// and they did print crafted text, escaped
				shown := false
				for _, esc := range []string{`\x1b`, `<0x1B>`, `\u202e`, `<U+202E>`, `\u009b`, `<U+009B>`} {
					shown = shown || strings.Contains(out+errOut+msg.String(), esc)
				}
				if !shown && !c.bland {
					t.Errorf("no crafted text shown:\n%s%s%s", out, errOut, msg.String())
				}
				if (err != nil) != c.fails || out == "" && err == nil {
					t.Errorf("err = %v (want one: %v), %d bytes of output", err, c.fails, len(out))
				}
			})
		}
	}
}
