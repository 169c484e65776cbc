package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// runJSON runs lldiff with args, which must succeed and print one JSON
// document, and decodes the document as a T.
func runJSON[T any](t *testing.T, args ...string) T {
	t.Helper()
	out, _, err := run(t, false, args...)
	if err != nil {
		t.Fatal(err)
	}
	var doc T
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return doc
}

func TestPromptHelpers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.txt")
	if err := os.WriteFile(file, []byte("from a file\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	blank := filepath.Join(t.TempDir(), "blank.txt")
	if err := os.WriteFile(blank, []byte(" \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.txt")
	if err := os.WriteFile(empty, []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := needPrompt(nil, ""); err == nil || !strings.Contains(err.Error(), "--prompt-file") || ExitCode(err) != ExitUsage {
		t.Errorf("needPrompt without a prompt: %v", err)
	}
	if err := needPrompt([]string{"x"}, ""); err != nil {
		t.Errorf("needPrompt with an argument: %v", err)
	}
	if err := needPrompt(nil, file); err != nil {
		t.Errorf("needPrompt with a file: %v", err)
	}
	for _, tc := range []struct {
		name, text, file string
		want             string // the prompt, or a part of the error
		usage            bool   // the error is a usage error
	}{
		{"text", "hello", "", "hello", false},
		{"file, trailing newlines cut", "", file, "from a file", false},
		{"both", "hello", file, "choose one", true},
		// spaces are text (they have tokens); no text at all is refused
		{"spaces", "  ", "", "  ", false},
		{"file of spaces", "", blank, " ", false},
		{"empty file", "", empty, "the prompt is empty", true},
		{"missing file", "", filepath.Join(t.TempDir(), "nope.txt"), "nope.txt", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readOnePrompt(tc.text, tc.file)
			if err == nil {
				if got != tc.want {
					t.Errorf("prompt %q, want %q", got, tc.want)
				}
				return
			}
			if !strings.Contains(err.Error(), tc.want) || (ExitCode(err) == ExitUsage) != tc.usage {
				t.Errorf("error %v (exit %d), want one containing %q, usage %v", err, ExitCode(err), tc.want, tc.usage)
			}
		})
	}
}

func TestTokenizePromptsAndAnswers(t *testing.T) {
	m, err := llamacpp.LoadModel(testmodels.Path(t, testmodels.Stories260K), llamacpp.ModelParams{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	to := llamacpp.TokenizeOptions{BOS: llamacpp.BOSNo}
	ids, err := tokenizePrompts(m, to, "Once upon a time", "One day")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"Once upon a time", "One day"} {
		want, err := m.Tokenize(p, to)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids[i], want) {
			t.Errorf("prompt %d: %v, want %v", i, ids[i], want)
		}
	}
	// Without BOS the empty prompt gives no tokens: one prompt says "the
	// prompt", several say "a prompt".
	var ue *UsageError
	if _, err := tokenizePrompts(m, to, ""); err == nil || err.Error() != "the prompt gives no tokens" || !errors.As(err, &ue) {
		t.Errorf("one empty prompt: %v", err)
	}
	if _, err := tokenizePrompts(m, to, "Once", ""); err == nil || err.Error() != "a prompt gives no tokens" || !errors.As(err, &ue) {
		t.Errorf("an empty prompt of two: %v", err)
	}
	if _, _, err := analysis.AnswerTokens(m, "Once", ids[0], "", to); flagAdvice(err) == nil || !strings.HasPrefix(err.Error(), "--answer is empty") || !errors.As(flagAdvice(err), &ue) {
		t.Errorf("empty answer: %v", err)
	}
}

// TestFlagsParsedOnce: compare's --lens-norm, contrast's --pos and
// --lens-norm, and patch's --kinds and --layers are parsed once, in the
// command's flag handling, into typed options: the run function gets
// values, not text to parse again (issue 13).
func TestFlagsParsedOnce(t *testing.T) {
	io := &IOStreams{In: strings.NewReader(""), Out: &strings.Builder{}, ErrOut: &strings.Builder{}}
	execute := func(cmd *cobra.Command, args ...string) {
		t.Helper()
		cmd.SetArgs(args)
		cmd.SetOut(io.ErrOut)
		cmd.SetErr(io.ErrOut)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%s %q: %v", cmd.Name(), args, err)
		}
	}

	var co *CompareOptions
	execute(newCmdCompare(io, func(o *CompareOptions) error { co = o; return nil }), "-m", "m.gguf", "--lens-norm", "gamma", "a", "b")
	if co == nil || co.Lens != models.LensGamma {
		t.Errorf("compare --lens-norm gamma: %+v", co)
	}

	var xo *ContrastOptions
	execute(newCmdContrast(io, func(o *ContrastOptions) error { xo = o; return nil }), "-m", "m.gguf", "--a", "a.txt", "--b", "b.txt", "--pos", "0, -2,last", "--lens-norm", "raw")
	if xo == nil || !slices.Equal(xo.Positions.Indices, []int{0, -2, -1}) || xo.Positions.All || xo.Pos != "0, -2,last" || xo.Lens != models.LensRaw {
		t.Errorf("contrast --pos 0,-2,last --lens-norm raw: %+v", xo)
	}

	var po *PatchOptions
	execute(newCmdPatch(io, func(o *PatchOptions) error { po = o; return nil }), "-m", "m.gguf", "--clean", "a", "--corrupt", "b", "--answer", " x",
		"--kinds", "mlp_out, z,mlp_out", "--layers", "1:3")
	if po == nil || !slices.Equal(po.Kinds, []models.Kind{models.MLPOut, models.Z}) || po.Layers.String() != "1:3" {
		t.Fatalf("patch --kinds mlp_out,z --layers 1:3: %+v", po)
	}
	if ls, err := po.Layers.Resolve(5); err != nil || !slices.Equal(ls, []int{1, 2, 3}) {
		t.Errorf("--layers 1:3 resolves to %v, %v", ls, err)
	}
}
