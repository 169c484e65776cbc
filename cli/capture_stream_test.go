package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// longPrompt is a prompt of about 130 stories260K tokens: with -u 16 its
// capture streams through nine ubatches.
var longPrompt = strings.Repeat("Lily saw a big dog in the park and they played. ", 8)

// TestCaptureStreamEqualsRun: capture writes each ubatch's rows to its
// files as they are computed, and the files hold exactly what a capture
// of the whole sequence at once (Context.Run, same ubatch size: the same
// graphs on the same numbers) holds, logits included.
func TestCaptureStreamEqualsRun(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	dir := filepath.Join(t.TempDir(), "acts")
	pf := writeFile(t, filepath.Join(t.TempDir(), "p.txt"), longPrompt)
	if _, _, err := run(t, false, "capture", oneThread, "-m", model, "-c", "256", "-u", "16", "--hooks", "resid_post,attn_out,mlp_out,logits", "-o", dir, "--prompt-file", pf); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx CaptureIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	m, err := llamacpp.LoadModel(model, llamacpp.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids, err := m.Tokenize(longPrompt, llamacpp.TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 8*16 || len(idx.Tokens) != len(ids) {
		t.Fatalf("%d tokens (index: %d): the prompt should fill more than 8 ubatches of 16", len(ids), len(idx.Tokens))
	}
	ctx, err := m.NewContext(llamacpp.ContextParams{NCtx: 256, NUBatch: 16, Threads: 1})
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
	if want := 3*m.NLayer() + 1; len(hooks) != want {
		t.Fatalf("%d files, want %d", len(hooks), want)
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
		a, _ := caches[0].At(hooks[i])
		if !slices.Equal(shape, []int{len(ids), a.Width}) || !slices.Equal(f.Shape, shape) {
			t.Errorf("%s: shape %v (index %v), want [%d %d]", f.File, shape, f.Shape, len(ids), a.Width)
			continue
		}
		if !slices.Equal(data, a.Data) {
			k := 0
			for k < len(data) && data[k] == a.Data[k] {
				k++
			}
			t.Errorf("%s: first difference at row %d: %v, Run gives %v", f.File, k/a.Width, data[k], a.Data[k])
		}
	}
}

// TestCaptureStreamFailureLeavesNothing: a write that fails after some
// ubatches were streamed (a full disk) leaves no output directory and
// nothing beside it, and with --force the old directory as it was.
func TestCaptureStreamFailureLeavesNothing(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	pf := writeFile(t, filepath.Join(t.TempDir(), "p.txt"), longPrompt)
	args := func(dir string) []string {
		return []string{"capture", oneThread, "-m", model, "-u", "16", "--hooks", "resid_post,mlp_out.1", "-o", dir, "--prompt-file", pf}
	}
	top := t.TempDir()
	old := filepath.Join(top, "old")
	if _, _, err := run(t, false, args(old)...); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, old)

	writes := 0
	writeNpyRows = func(w *npy.Writer, rows []float32) error {
		writes++
		if writes <= 3*6 { // three ubatches of 6 hooks
			return w.Write(rows)
		}
		return &os.PathError{Op: "write", Path: "x.npy", Err: syscall.ENOSPC}
	}
	defer func() { writeNpyRows = streamNpyRows }()
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"new", args(filepath.Join(top, "new"))},
		{"force", append(args(old), "--force")},
	} {
		writes = 0
		_, _, err := run(t, false, tc.argv...)
		if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("%s: err = %v, want the disk error and that nothing changed", tc.name, err)
		}
		if writes <= 3*6 {
			t.Errorf("%s: the failing write was never reached (%d writes)", tc.name, writes)
		}
		if got := names(t, top); !slices.Equal(got, []string{"old"}) {
			t.Errorf("%s: the failed capture left %v", tc.name, got)
		}
		if d := sameSnapshot(before, snapshot(t, old)); d != "" {
			t.Errorf("%s: the old directory changed: %s", tc.name, d)
		}
	}
}
