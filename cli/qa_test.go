package cli

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// Bad and edge-case input for every command: each must end in an error that
// names the problem and the fix, with the exit code of its kind (2 for a
// usage mistake), and never in a crash, a llama.cpp abort or a hang.

// writeNpyHeader writes a float32 .npy file whose header claims shape but
// whose data is vals: a header may claim more data than the file holds.
func writeNpyHeader(t *testing.T, path, shape string, vals []float32) {
	t.Helper()
	h := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", shape)
	h += strings.Repeat(" ", 63-(10+len(h))%64) + "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(b[8:], uint16(len(h)))
	b = append(b, h...)
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fifo makes a named pipe: a path that exists and is not a regular file,
// like /dev/null, that a test can lose without harm.
func fifo(t *testing.T, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

func isFifo(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.Mode()&os.ModeNamedPipe != 0
}

func TestQABadInputs(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	vocab := testmodels.Path(t, testmodels.VocabLlamaSPM)
	pythia := synthArch(t, "pythia-70m", "F32")
	tmp := t.TempDir()
	a := writeFile(t, filepath.Join(tmp, "a.txt"), "She went home.\nShe likes cats.\n")
	b := writeFile(t, filepath.Join(tmp, "b.txt"), "He went home.\nHe likes cats.\n")
	emptyStr := writeFile(t, filepath.Join(tmp, "e.jsonl"), "\"She went\"\n\"  \"\n")
	// an earlier export of the he/she directions, for steer
	cvec := filepath.Join(tmp, "hs.gguf")
	if _, _, err := run(t, false, "contrast", oneThread, "-m", model, "--a", sheFile, "--b", heFile, "--paired", "--lens-k", "0", "--export-cvec", cvec); err != nil {
		t.Fatal(err)
	}
	v64 := filepath.Join(tmp, "v.npy")
	writeNpyHeader(t, v64, "(64,)", make([]float32, 64))
	huge := filepath.Join(tmp, "huge.npy")
	writeNpyHeader(t, huge, "(999999999999,)", []float32{1, 2, 3})
	overflow := filepath.Join(tmp, "overflow.npy")
	writeNpyHeader(t, overflow, "(4611686018427387904,)", []float32{1, 2, 3})
	nan := filepath.Join(tmp, "nan.npy")
	nanVals := make([]float32, 64)
	nanVals[3] = float32(math.NaN())
	writeNpyHeader(t, nan, "(64,)", nanVals)
	dir := filepath.Join(tmp, "adir")
	os.Mkdir(dir, 0o755)
	pipe := fifo(t, filepath.Join(tmp, "pipe"))
	gl, by := "Once upon a time, there was a little girl. One day,", "Once upon a time, there was a little boy. One day,"

	for _, tc := range []struct {
		name string
		args []string
		exit int
		want []string // parts of the error: the problem and the fix
	}{
		// argument counts are usage mistakes and show the usage line
		{"inspect without a file", []string{"inspect"}, ExitUsage, []string{"lldiff inspect MODEL"}},
		{"inspect with two files", []string{"inspect", model, model}, ExitUsage, []string{"lldiff inspect MODEL"}},
		{"inspect empty path", []string{"inspect", ""}, ExitUsage, []string{"empty"}},
		{"synth with an argument", []string{"synth", "-o", filepath.Join(tmp, "x.gguf"), "extra"}, ExitUsage, []string{`"extra"`, "lldiff synth"}},
		{"unknown command", []string{"comprae"}, ExitUsage, []string{"comprae", "compare"}},
		{"compare with three prompts", []string{"compare", "-m", model, "a", "b", "c"}, ExitUsage, []string{"lldiff compare"}},
		{"vec with one source", []string{"vec", v64}, ExitUsage, []string{"lldiff vec"}},
		{"tokenize without text", []string{"tokenize", "-m", model}, ExitUsage, []string{"lldiff tokenize"}},

		// numbers llama.cpp cannot take: ggml aborts on thousands of
		// threads and hangs on 513; -c above 2^32 wraps around
		{"too many threads", []string{"capture", "-m", model, "-t", "100000", "-o", filepath.Join(tmp, "t1"), "hi"}, ExitUsage, []string{"-t", "512"}},
		{"513 threads", []string{"capture", "-m", model, "-t", "513", "-o", filepath.Join(tmp, "t2"), "hi"}, ExitUsage, []string{"-t", "512"}},
		{"context beyond uint32", []string{"capture", "-m", model, "-c", "4294967296", "-o", filepath.Join(tmp, "t3"), "hi"}, ExitUsage, []string{"-c"}},
		{"batch beyond uint32", []string{"capture", "-m", model, "-b", "4294967296", "-o", filepath.Join(tmp, "t4"), "hi"}, ExitUsage, []string{"-b"}},
		{"contrast parallel above 256", []string{"contrast", "-m", model, "--a", a, "--b", b, "-P", "1000"}, ExitUsage, []string{"--parallel", "256"}},

		// prompt files
		{"prompt file that never ends", []string{"compare", "-m", model, "--a-file", "/dev/zero", "--b-file", b}, ExitUsage, []string{"/dev/zero", "MiB"}},
		{"missing prompt file", []string{"compare", "-m", model, "--a-file", filepath.Join(tmp, "nope.txt"), "--b-file", b}, ExitError, []string{"prompt A", "nope.txt"}},
		{"JSON prompt that is blank", []string{"contrast", "-m", model, "--a", emptyStr, "--b", b}, ExitUsage, []string{"e.jsonl:2", "empty"}},
		{"directory as prompt file", []string{"contrast", "-m", model, "--a", dir, "--b", b}, ExitUsage, []string{"adir", "directory"}},

		// output paths
		{"synth into a missing directory", []string{"synth", "-o", filepath.Join(tmp, "nodir", "x.gguf"), "--vocab", vocab}, ExitUsage, []string{"nodir", "does not exist", "mkdir"}},
		{"synth onto a directory", []string{"synth", "-o", dir, "--force", "--vocab", vocab}, ExitUsage, []string{"adir", "is a directory"}},
		{"synth onto a pipe", []string{"synth", "-o", pipe, "--force", "--vocab", vocab}, ExitUsage, []string{"pipe", "not a regular file"}},
		{"plot into a missing directory", []string{"patch", "-m", model, "--clean", gl, "--corrupt", by, "--answer", " she", "--plot", filepath.Join(tmp, "nodir", "p.png")}, ExitUsage, []string{"--plot", "does not exist"}},
		{"export-cvec onto a directory", []string{"contrast", "-m", model, "--a", a, "--b", b, "--export-cvec", dir, "--force"}, ExitUsage, []string{"--export-cvec", "is a directory"}},
		{"export-cvec onto a pipe", []string{"contrast", "-m", model, "--a", a, "--b", b, "--export-cvec", pipe, "--force"}, ExitUsage, []string{"--export-cvec", "not a regular file"}},
		{"export-cvec into a missing directory", []string{"contrast", "-m", model, "--a", a, "--b", b, "--export-cvec", filepath.Join(tmp, "nodir", "c.gguf")}, ExitUsage, []string{"--export-cvec", "does not exist"}},
		{"save-vectors onto a file", []string{"contrast", "-m", model, "--a", a, "--b", b, "--save-vectors", a}, ExitUsage, []string{"--save-vectors", "not a directory"}},
		{"capture onto a file", []string{"capture", "-m", model, "-o", a, "hi"}, ExitUsage, []string{"-o", "not a directory"}},

		// synth: llama.cpp's quantizer aborts on rows that are not
		// whole K-quant blocks when every matrix must take the type
		{"pure K-quant of 64-wide rows", []string{"synth", "-o", filepath.Join(tmp, "k.gguf"), "--type", "Q4_K", "--pure", "--vocab", vocab, "--d-model", "64"}, ExitUsage, []string{"256", "--pure"}},

		// compare, patch, contrast, vec: what an architecture lacks
		{"patch kind that is not one", []string{"patch", "-m", model, "--clean", gl, "--corrupt", by, "--answer", " she", "--kinds", "bogus"}, ExitUsage, []string{"--kinds", `"bogus"`, "--layers"}},
		{"patch layers not a number", []string{"patch", "-m", model, "--clean", gl, "--corrupt", by, "--answer", " she", "--layers", "x"}, ExitUsage, []string{"--layers", `"x" is not a layer number`}},
		{"patch layers past the model", []string{"patch", oneThread, "-m", model, "--clean", gl, "--corrupt", by, "--answer", " she", "--layers", "7:9"}, ExitUsage, []string{`--layers "7:9"`, "no layer of the model's 5"}},
		{"patch resid_mid on Pythia", []string{"patch", "-m", pythia, "--clean", gl, "--corrupt", by, "--answer", " she", "--kinds", "resid_mid"}, ExitUsage, []string{"resid_mid", "parallel"}},
		{"contrast resid_mid on Pythia", []string{"contrast", "-m", pythia, "--a", a, "--b", b, "--kinds", "resid_mid"}, ExitUsage, []string{"resid_mid", "parallel"}},
		{"vec pair with two bars", []string{"vec", "-m", model, "a|b|c", "d|e"}, ExitUsage, []string{`"a|b|c"`, "more than one |", `\|`}},
		{"vec resid_mid on Pythia", []string{"vec", "-m", pythia, "--hooks", "resid_mid", "a|b", "c|d"}, ExitUsage, []string{"resid_mid", "parallel"}},

		// compare: a context that holds the prompts but not prompt + answer
		{"answer past the context", []string{"compare", "-m", model, "-c", "3", "a", "b", "--answer", " she went home"}, ExitError, []string{"--answer", "-c"}},
		{"empty answer", []string{"compare", "-m", model, "a", "b", "--answer", ""}, ExitUsage, []string{"--answer", "empty", `" she"`}},

		// steer
		{"scale sweep of 1e300 steps", []string{"steer", "-m", model, "--cvec", cvec, "--scale", "0:1:1e-300", "x"}, ExitUsage, []string{"--scale", "1000"}},
		{"scale beyond float32", []string{"steer", oneThread, "-m", model, "--cvec", cvec, "--scale", "1e39", "-n", "2", "x"}, ExitUsage, []string{"--scale 1e+39", "float32"}},
		{"scale that overflows the model", []string{"steer", oneThread, "-m", model, "--cvec", cvec, "--scale", "1e30", "-n", "2", "x"}, ExitError, []string{"1e+30", "smaller"}},
		{"generation past the context", []string{"steer", oneThread, "-m", model, "--cvec", cvec, "-n", "100000", "x"}, ExitError, []string{"-n 100000"}},

		// vec: .npy headers that claim more than the file holds
		{"npy of 10^12 values", []string{"vec", v64, huge}, ExitError, []string{"huge.npy", "999999999999"}},
		{"npy shape that overflows", []string{"vec", v64, overflow}, ExitError, []string{"overflow.npy"}},
		{"npy holding NaN", []string{"vec", v64, nan}, ExitError, []string{"nan.npy", "NaN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if ExitCode(err) != tc.exit {
				t.Errorf("exit code %d, want %d (%v)", ExitCode(err), tc.exit, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if !isFifo(pipe) {
		t.Error("a write with --force replaced the named pipe")
	}
	for _, leftover := range []string{"t1", "t2", "t3", "t4", "k.gguf", "x.gguf"} {
		if _, err := os.Stat(filepath.Join(tmp, leftover)); err == nil {
			t.Errorf("a failed command left %s behind", leftover)
		}
	}
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("a failed command left the temporary file %s behind", e.Name())
		}
	}
}

// TestQAPlotKeepsExistingFile: --plot does not replace a file without
// --force, and says so before any patching is done.
func TestQAPlotKeepsExistingFile(t *testing.T) {
	p := writeFile(t, filepath.Join(t.TempDir(), "mine.png"), "my own picture")
	_, _, err := run(t, false, patchArgs(t, "--plot", p)...)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v, want a hint to --force", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "my own picture" {
		t.Fatal("patch --plot replaced an existing file")
	}
	if _, _, err := run(t, false, patchArgs(t, "--plot", p, "--force")...); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) == "my own picture" {
		t.Error("--force did not replace the file")
	}
}

// TestQANormalizeArgs: llama.cpp's multi-letter single-dash flags, as the
// README writes them (-ngl 999), work.
func TestQANormalizeArgs(t *testing.T) {
	got := NormalizeArgs([]string{"compare", "-ngl", "99", "-np=4", "-n", "3", "--", "-ngl"})
	want := []string{"compare", "--ngl", "99", "--np=4", "-n", "3", "--", "-ngl"}
	if !slices.Equal(got, want) {
		t.Errorf("NormalizeArgs = %q, want %q", got, want)
	}
	model := testmodels.Path(t, testmodels.Stories260K)
	if _, _, err := run(t, false, "steer", oneThread, "-ngl", "0", "-m", model, "--cvec", "x.gguf", "-n", "1", "hi"); err == nil || strings.Contains(err.Error(), "flag") {
		t.Errorf("steer -ngl 0: %v, want the missing control vector, not a flag error", err)
	}
}

// TestQACaptureLeavesNoDirectory: a capture that fails before writing
// creates no output directory.
func TestQACaptureLeavesNoDirectory(t *testing.T) {
	out := filepath.Join(t.TempDir(), "acts")
	_, _, err := run(t, false, "capture", oneThread, "-m", testmodels.Path(t, testmodels.Stories260K), "-c", "2", "-o", out, "a longer prompt")
	if err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the failed capture created its output directory")
	}
}

// TestQAZeroDirections: positions where A and B are identical give no
// direction: exporting one is refused, and vec shows the cosine of a zero
// vector as undefined.
func TestQAZeroDirections(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	tmp := t.TempDir()
	cv := filepath.Join(tmp, "zero.gguf")
	// position 0 is BOS in every prompt
	doc := contrastJSON(t, "--a", sheFile, "--b", heFile, "--paired", "--pos", "0", "--lens-k", "0")
	if !slices.ContainsFunc(doc.Warnings, func(w string) bool { return strings.Contains(w, "nothing to contrast") }) {
		t.Errorf("no note that A and B do not differ: %q", doc.Warnings)
	}
	_, _, err := run(t, false, "contrast", oneThread, "-m", model, "--a", sheFile, "--b", heFile, "--paired", "--pos", "0", "--lens-k", "0", "--export-cvec", cv)
	if err == nil || !strings.Contains(err.Error(), "zero") {
		t.Errorf("exporting zero directions: %v", err)
	}
	if _, err := os.Stat(cv); err == nil {
		t.Error("a control vector of zeros was written")
	}
	z := filepath.Join(tmp, "z.npy")
	writeNpyHeader(t, z, "(4,)", make([]float32, 4))
	v := filepath.Join(tmp, "v.npy")
	writeNpyHeader(t, v, "(4,)", []float32{1, 2, 3, 4})
	vd := runJSON[VecJSON](t, "vec", "--json", z, v)
	if c := vd.Hooks[0].Cosine[0]; c[0] != nil || c[1] != nil {
		t.Errorf("cosines of a zero vector %v, want null", c)
	}
	if c := vd.Hooks[0].Cosine[1][1]; c == nil || *c != 1 {
		t.Errorf("cos(v, v) = %v, want 1", c)
	}
	out, _, err := run(t, false, "vec", z, v)
	if err != nil || !strings.Contains(out, "–") {
		t.Errorf("vec table for a zero vector: %v\n%s", err, out)
	}
}

// TestQAWriterKeepsSpecialFiles: the GGUF writer never renames a file over
// a pipe or device, even when told to overwrite.
func TestQAWriterKeepsSpecialFiles(t *testing.T) {
	p := fifo(t, filepath.Join(t.TempDir(), "pipe"))
	cv := &contrast.ControlVector{Directions: map[int][]float32{1: {1, 0}}, Offset: 0}
	if err := cv.WriteFile(p, true); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("writing over a pipe: %v", err)
	}
	if !isFifo(p) {
		t.Error("the pipe was replaced")
	}
}

// TestQASingleRowNote: one prompt per set leaves spread and separation
// undefined, and contrast says why.
func TestQASingleRowNote(t *testing.T) {
	tmp := t.TempDir()
	a := writeFile(t, filepath.Join(tmp, "a.txt"), "She went home.\n")
	b := writeFile(t, filepath.Join(tmp, "b.txt"), "He went home.\n")
	doc := contrastJSON(t, "--a", a, "--b", b, "--lens-k", "0")
	if !slices.ContainsFunc(doc.Warnings, func(w string) bool { return strings.Contains(w, "at least 2") }) {
		t.Errorf("no note about one row per set: %q", doc.Warnings)
	}
}

// TestQADevicesBackendDir: a $LLDIFF_BACKEND_DIR that does not exist is
// named, not silently ignored.
func TestQADevicesBackendDir(t *testing.T) {
	t.Setenv("LLDIFF_BACKEND_DIR", filepath.Join(t.TempDir(), "nope"))
	_, errOut, err := run(t, false, "devices")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "LLDIFF_BACKEND_DIR") || !strings.Contains(errOut, "nope") {
		t.Errorf("stderr %q does not name the missing backend directory", errOut)
	}
}

// TestQAPromptFileLineEnds: a prompt file saved on Windows (byte-order mark,
// CRLF line ends) gives the same prompt as a plain one, not byte tokens.
func TestQAPromptFileLineEnds(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"crlf.txt": "Once upon a time\r\nthere was\r\n",
		"bom.txt":  "\ufeffOnce upon a time\nthere was\n",
	} {
		got, err := readOnePrompt("", writeFile(t, filepath.Join(dir, name), content))
		if err != nil || got != "Once upon a time\nthere was" {
			t.Errorf("%s: prompt %q, %v", name, got, err)
		}
	}
}
