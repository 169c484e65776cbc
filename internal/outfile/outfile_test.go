package outfile

import (
	"github.com/lldiff/lldiff/internal/testexec"

	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entries lists a directory's names, hidden ones included.
func entries(t *testing.T, dir string) []string {
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

func TestFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.png")
	write(t, p, "old")

	// Abort keeps what was there and leaves nothing behind.
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	f.Abort()
	if got := read(t, p); got != "old" {
		t.Errorf("after Abort: %q", got)
	}
	if es := entries(t, dir); len(es) != 1 {
		t.Errorf("after Abort the directory holds %v", es)
	}

	// Commit replaces it in one rename.
	if err := WriteFile(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got := read(t, p); got != "new" {
		t.Errorf("after Commit: %q", got)
	}
	if es := entries(t, dir); len(es) != 1 {
		t.Errorf("after Commit the directory holds %v", es)
	}
}

func TestDirNew(t *testing.T) {
	top := t.TempDir()
	final := filepath.Join(top, "a", "b", "run")
	d, err := CreateDir(final, "index.json")
	if err != nil {
		t.Fatal(err)
	}
	write(t, d.Path("x.npy"), "x")
	write(t, d.Path("index.json"), "{}")
	if _, err := os.Stat(final); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the output exists before Commit: %v", err)
	}
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, final); strings.Join(got, ",") != "index.json,x.npy" {
		t.Errorf("committed %v", got)
	}
	if got := entries(t, top); strings.Join(got, ",") != "a" {
		t.Errorf("left beside the output: %v", got)
	}
	// A failed run into a new nested path leaves nothing, not even parents.
	d, err = CreateDir(filepath.Join(top, "c", "d"), "index.json")
	if err != nil {
		t.Fatal(err)
	}
	write(t, d.Path("x.npy"), "x")
	d.Abort()
	if got := entries(t, top); strings.Join(got, ",") != "a" {
		t.Errorf("after Abort: %v", got)
	}
}

func TestDirForce(t *testing.T) {
	top := t.TempDir()
	final := filepath.Join(top, "run")
	os.Mkdir(final, 0o755)
	write(t, filepath.Join(final, "x.npy"), "old x")
	write(t, filepath.Join(final, "notes.txt"), "mine")
	write(t, filepath.Join(final, "index.json"), "old index")

	// An aborted run leaves the old directory exactly as it was.
	d, err := CreateDir(final, "index.json")
	if err != nil {
		t.Fatal(err)
	}
	write(t, d.Path("x.npy"), "new x")
	d.Abort()
	if read(t, filepath.Join(final, "x.npy")) != "old x" || read(t, filepath.Join(final, "index.json")) != "old index" {
		t.Error("Abort changed the old directory")
	}

	d, err = CreateDir(final, "index.json")
	if err != nil {
		t.Fatal(err)
	}
	write(t, d.Path("x.npy"), "new x")
	write(t, d.Path("y.npy"), "new y")
	write(t, d.Path("index.json"), "new index")
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"x.npy": "new x", "y.npy": "new y", "index.json": "new index", "notes.txt": "mine"} {
		if got := read(t, filepath.Join(final, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := entries(t, top); strings.Join(got, ",") != "run" {
		t.Errorf("left beside the output: %v", got)
	}
}

func TestDirLock(t *testing.T) {
	final := filepath.Join(t.TempDir(), "run")
	d, err := CreateDir(final, "index.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateDir(final, "index.json"); err == nil || !strings.Contains(err.Error(), "is writing") {
		t.Fatalf("second writer: %v, want an error saying another lldiff is writing", err)
	}
	d.Abort()
	d2, err := CreateDir(final, "index.json")
	if err != nil {
		t.Fatalf("after the first writer ended: %v", err)
	}
	d2.Abort()
}

// TestSignalRemovesStaging interrupts a child process in the middle of
// writing a file and a directory: it exits 130 and leaves nothing.
func TestSignalRemovesStaging(t *testing.T) {
	if dir := os.Getenv("OUTFILE_CHILD_DIR"); dir != "" {
		HandleSignals()
		d, err := CreateDir(filepath.Join(dir, "run"), "index.json")
		if err != nil {
			os.Exit(3)
		}
		write(t, d.Path("x.npy"), "x")
		f, err := Create(filepath.Join(dir, "plot.png"))
		if err != nil {
			os.Exit(3)
		}
		f.WriteString("half")
		os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644)
		time.Sleep(time.Minute)
		os.Exit(4)
	}
	dir := t.TempDir()
	cmd := testexec.Self("-test.run=^TestSignalRemovesStaging$")
	cmd.Env = append(os.Environ(), "OUTFILE_CHILD_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("child never got ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := entries(t, dir); len(got) < 3 {
		t.Fatalf("child wrote %v, want staging files beside ready", got)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("child exit: %v, want status 130", err)
	}
	if got := entries(t, dir); strings.Join(got, ",") != "ready" {
		t.Errorf("after SIGINT the folder holds %v, want only ready", got)
	}
}
