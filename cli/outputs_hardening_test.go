package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// Issue 14, part 2: output directories are written beside their path and
// moved into place, locked, and removed on error and on an interrupt; an
// output that fails or is interrupted never leaves a directory that looks
// complete.

// snapshot returns every file under dir (relative name → content).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameSnapshot reports how two snapshots differ, or "".
func sameSnapshot(a, b map[string]string) string {
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			diffs = append(diffs, k+" removed")
		} else if w != v {
			diffs = append(diffs, k+" changed")
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, k+" added")
		}
	}
	slices.Sort(diffs)
	return strings.Join(diffs, ", ")
}

// names lists a directory's entries, hidden ones included.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// outputCase is a command that writes an output directory: capture -o
// or contrast --save-vectors, with the arguments that write dir, and a
// second prompt set that writes other contents.
type outputCase struct {
	name string
	args func(dir string, second bool) []string
}

func outputCases(t *testing.T) []outputCase {
	model := testmodels.Path(t, testmodels.Stories260K)
	return []outputCase{
		{"capture", func(dir string, second bool) []string {
			prompt := "Lily saw a big dog"
			if second {
				prompt = "Tom had a red ball in the park"
			}
			return []string{"capture", oneThread, "-m", model, "--hooks", "resid_post,mlp_out.1", "-o", dir, prompt}
		}},
		{"contrast", func(dir string, second bool) []string {
			a, b := sheFile, heFile
			if second {
				a, b = heFile, sheFile
			}
			return []string{"contrast", oneThread, "-m", model, "--a", a, "--b", b, "--paired", "--kinds", "resid_post", "--lens-k", "0", "--save-vectors", dir}
		}},
	}
}

// checkIndexSizes checks that index.json records each file's size.
func checkIndexSizes(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Files []struct {
			File  string `json:"file"`
			Shape []int  `json:"shape"`
			Bytes *int64 `json:"bytes"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Files) == 0 {
		t.Fatal("index.json lists no files")
	}
	for _, f := range idx.Files {
		st, err := os.Stat(filepath.Join(dir, f.File))
		if err != nil {
			t.Fatal(err)
		}
		if f.Bytes == nil || *f.Bytes != st.Size() || *f.Bytes != npy.FileSize(f.Shape) {
			t.Errorf("%s: index.json records bytes %v, the file has %d", f.File, f.Bytes, st.Size())
		}
	}
}

// TestOutputFailedWriteKeepsDirectory: a write that fails in the middle of
// a --force run (a full disk) leaves the old directory exactly as it was,
// nothing beside it, and says so; a run that succeeds replaces the old
// files, keeps unrelated ones, and records every file's size.
func TestOutputFailedWriteKeepsDirectory(t *testing.T) {
	for _, tc := range outputCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "out")
			if _, _, err := run(t, false, tc.args(dir, false)...); err != nil {
				t.Fatal(err)
			}
			checkIndexSizes(t, dir)
			writeFile(t, filepath.Join(dir, "notes.txt"), "mine")
			before := snapshot(t, dir)

			calls := 0
			writeNpy = func(path string, shape []int, data []float32) error {
				calls++
				if calls < 2 {
					return npy.WriteFile(path, shape, data)
				}
				// half a file, then the disk is full
				os.WriteFile(path, []byte("\x93NUMPY half"), 0o644)
				return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
			}
			// capture streams its rows (writeNpyRows): the disk fills at
			// its second write there
			rowWrites := 0
			writeNpyRows = func(w *npy.Writer, rows []float32) error {
				rowWrites++
				if rowWrites < 2 {
					return w.Write(rows)
				}
				return &os.PathError{Op: "write", Path: "x.npy", Err: syscall.ENOSPC}
			}
			defer func() { writeNpy, writeNpyRows = npy.WriteFile, streamNpyRows }()
			_, _, err := run(t, false, append(tc.args(dir, true), "--force")...)
			if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "nothing was changed") {
				t.Fatalf("failed write: err = %v, want the disk error and that nothing changed", err)
			}
			if d := sameSnapshot(before, snapshot(t, dir)); d != "" {
				t.Errorf("the failed --force run changed the directory: %s", d)
			}
			if got := names(t, top); !slices.Equal(got, []string{"out"}) {
				t.Errorf("the failed run left %v beside the output", got)
			}

			writeNpy, writeNpyRows = npy.WriteFile, streamNpyRows
			if _, _, err := run(t, false, append(tc.args(dir, true), "--force")...); err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, dir)
			if after["notes.txt"] != "mine" {
				t.Error("--force removed a file of the user's")
			}
			if after["index.json"] == before["index.json"] {
				t.Error("--force left the old index.json")
			}
			checkIndexSizes(t, dir)
			if got := names(t, top); !slices.Equal(got, []string{"out"}) {
				t.Errorf("the run left %v beside the output", got)
			}
		})
	}
}

// TestOutputSecondWriterFails: a second run writing the same directory
// while the first runs fails at once, saying so, and the first completes;
// before, both reported success and one output was lost.
func TestOutputSecondWriterFails(t *testing.T) {
	for _, tc := range outputCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			var second error
			ran := false
			testHook = func(point string) {
				if point != "npy written" || ran {
					return
				}
				ran = true
				_, _, second = run(t, false, tc.args(dir, true)...)
			}
			defer func() { testHook = nil }()
			if _, _, err := run(t, false, tc.args(dir, false)...); err != nil {
				t.Fatalf("first writer: %v", err)
			}
			if !ran {
				t.Fatal("the test hook never ran")
			}
			if second == nil || !strings.Contains(second.Error(), "is writing") || !strings.Contains(second.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
				t.Errorf("second writer: %v, want an error naming the other lldiff", second)
			}
			checkIndexSizes(t, dir)
			// once the first is done, the directory is not empty
			_, _, err := run(t, false, tc.args(dir, true)...)
			if err == nil || !strings.Contains(err.Error(), "--force") {
				t.Errorf("after the first writer: %v, want a hint to --force", err)
			}
		})
	}
}

// interruptEnv names the environment variables of the child process of
// TestOutputInterrupted.
const (
	interruptArgsEnv  = "LLDIFF_TEST_INTERRUPT_ARGS"
	interruptReadyEnv = "LLDIFF_TEST_INTERRUPT_READY"
	interruptPointEnv = "LLDIFF_TEST_INTERRUPT_POINT"
)

// TestOutputInterrupted interrupts (SIGINT, as Ctrl-C does) a child
// process running lldiff in the middle of writing its output: the child
// exits 130, an old directory or plot is left exactly as it was, a new
// directory is not created, and nothing is left beside them.
func TestOutputInterrupted(t *testing.T) {
	if args := os.Getenv(interruptArgsEnv); args != "" {
		// the child: lldiff as cmd/lldiff runs it, pausing at the point
		outfile.HandleSignals()
		testHook = func(point string) {
			if point == os.Getenv(interruptPointEnv) {
				os.WriteFile(os.Getenv(interruptReadyEnv), nil, 0o644)
				time.Sleep(time.Minute)
			}
		}
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			os.Exit(3)
		}
		_, _, err := run(t, false, argv...)
		fmt.Fprintln(os.Stderr, "child ended without a signal:", err)
		os.Exit(4)
	}
	model := testmodels.Path(t, testmodels.Stories260K)
	// interrupt runs args in a child, interrupts it at point, when a
	// temporary file or directory it writes is in the folder beside
	interrupt := func(t *testing.T, point, beside string, args []string) {
		t.Helper()
		ready := filepath.Join(t.TempDir(), "ready")
		cmd := exec.Command(os.Args[0], "-test.run=^TestOutputInterrupted$")
		argv, _ := json.Marshal(args)
		cmd.Env = append(os.Environ(), interruptArgsEnv+"="+string(argv), interruptReadyEnv+"="+ready, interruptPointEnv+"="+point)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the child never reached %q:\n%s", point, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !slices.ContainsFunc(names(t, beside), func(n string) bool { return strings.Contains(n, ".tmp-") }) {
			t.Errorf("at %q, %s holds %v: no temporary output to remove", point, beside, names(t, beside))
		}
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("child exit: %v, want status 130\n%s", err, stderr.String())
		}
	}
	for _, tc := range outputCases(t) {
		t.Run(tc.name+"/force", func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "out")
			if _, _, err := run(t, false, tc.args(dir, false)...); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "notes.txt"), "mine")
			before := snapshot(t, dir)
			interrupt(t, "npy written", top, append(tc.args(dir, true), "--force"))
			if d := sameSnapshot(before, snapshot(t, dir)); d != "" {
				t.Errorf("the interrupted --force run changed the directory: %s", d)
			}
			if got := names(t, top); !slices.Equal(got, []string{"out"}) {
				t.Errorf("the interrupted run left %v beside the output", got)
			}
		})
		t.Run(tc.name+"/new", func(t *testing.T) {
			top := t.TempDir()
			interrupt(t, "npy written", top, tc.args(filepath.Join(top, "a", "out"), false))
			if got := names(t, top); len(got) != 0 {
				t.Errorf("the interrupted run into a new directory left %v", got)
			}
		})
	}
	t.Run("patch-plot", func(t *testing.T) {
		top := t.TempDir()
		plot := writeFile(t, filepath.Join(top, "p.png"), "old picture")
		interrupt(t, "plot written", top, []string{"patch", oneThread, "-m", model, "--clean", patchCleanText, "--corrupt", patchCorruptText,
			"--answer", " she", "--pos", "last", "--plot", plot, "--force"})
		if got := snapshot(t, top); len(got) != 1 || got["p.png"] != "old picture" {
			t.Errorf("after the interrupt the folder holds %v, want only the old p.png", got)
		}
	})
}

// TestVectorIndexRecordsBytes: the index of --save-vectors records each
// file's size under "bytes", which vec checks.
func TestVectorIndexRecordsBytes(t *testing.T) {
	f := analysis.VectorFile{File: "x.npy", Bytes: 384}
	b, _ := json.Marshal(f)
	if !strings.Contains(string(b), `"bytes":384`) {
		t.Errorf("VectorFile JSON %s has no bytes", b)
	}
	c := CaptureFile{File: "x.npy", Bytes: 384}
	b, _ = json.Marshal(c)
	if !strings.Contains(string(b), `"bytes":384`) {
		t.Errorf("CaptureFile JSON %s has no bytes", b)
	}
}
