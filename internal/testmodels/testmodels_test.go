package testmodels

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedModels checks every shipped file against MANIFEST.md: a
// corrupted checkout (or a Git LFS pointer in place of a model) fails here
// with the file's name.
func TestShippedModels(t *testing.T) {
	t.Setenv(DirEnv, "")
	sums, err := Sums()
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != len(Names) {
		t.Errorf("MANIFEST.md lists %d sha256 lines, want one for each of %d files", len(sums), len(Names))
	}
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Names {
		got, err := FileSHA256(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != sums[name] {
			t.Errorf("%s: sha256 %s, MANIFEST.md says %s", name, got, sums[name])
		}
	}
	// Nothing else in the folder: other models do not belong in git.
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel = filepath.ToSlash(rel); rel != "MANIFEST.md" && sums[rel] == "" {
			t.Errorf("%s is in testdata/models but not in MANIFEST.md", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLookupErrors(t *testing.T) {
	// A corrupted copy is refused, naming the file and the fix.
	alt := t.TempDir()
	if err := os.WriteFile(filepath.Join(alt, Stories260K), []byte("version https://git-lfs.github.com/spec/v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(DirEnv, alt)
	_, err := Lookup(Stories260K)
	if err == nil || !strings.Contains(err.Error(), "corrupted") || !strings.Contains(err.Error(), filepath.Join(alt, Stories260K)) {
		t.Errorf("corrupted file: %v", err)
	}
	// A missing file names its path.
	if _, err := Lookup(TinyStories656KF16); err == nil || !strings.Contains(err.Error(), filepath.Join(alt, TinyStories656KF16)) {
		t.Errorf("missing file: %v", err)
	}
	// $LLDIFF_SHARED_MODELS naming no folder.
	t.Setenv(DirEnv, filepath.Join(alt, "missing"))
	if _, err := Dir(); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("missing folder: %v", err)
	}
}

// TestModuleRoot: the walk stops at the first go.mod, so a shared/models or
// testdata/models above the checkout (in $TMPDIR, say) is never found.
func TestModuleRoot(t *testing.T) {
	top := t.TempDir()
	repo := filepath.Join(top, "repo")
	deep := filepath.Join(repo, "a", "b")
	for _, d := range []string{deep, filepath.Join(top, "testdata", "models"), filepath.Join(top, "shared", "models")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module example.com/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "go.mod"), []byte("module example.com/outer\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ModuleRoot(deep)
	if err != nil || got != repo {
		t.Fatalf("ModuleRoot(%s) = %q, %v; want %s", deep, got, err, repo)
	}
	t.Setenv(DirEnv, "")
	t.Chdir(deep)
	if d, err := Dir(); err == nil {
		t.Errorf("Dir() in a checkout without testdata/models = %s, want an error (it must not look above the checkout)", d)
	} else if !strings.Contains(err.Error(), filepath.Join(repo, "testdata", "models")) {
		t.Errorf("Dir() error %q does not name %s", err, filepath.Join(repo, "testdata", "models"))
	}
}

// TestHermeticCopy copies the checkout's tracked and new files into an
// empty folder, with HOME empty and $LLDIFF_SHARED_MODELS unset, and runs
// tests that load every shipped model there: the suite needs nothing beside
// the repository.
func TestHermeticCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: copies the repository and runs go test in it")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	wd, _ := os.Getwd()
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	ls := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
	ls.Dir = root
	out, err := ls.Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): nothing to copy", err)
	}
	top := t.TempDir()
	copyRoot := filepath.Join(top, "empty-parent", "lldiff")
	n := 0
	for _, rel := range strings.Split(string(out), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a link
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(copyRoot, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	goEnv := func(k string) string {
		v, _ := exec.Command(goBin, "env", k).Output()
		return strings.TrimSpace(string(v))
	}
	home := filepath.Join(top, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	// The build and module caches are kept (they are Go's, not the
	// project's); everything the project reads must be in the copy.
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + top,
		"GOCACHE=" + goEnv("GOCACHE"), "GOMODCACHE=" + goEnv("GOMODCACHE"), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local"}
	for _, k := range []string{"CGO_ENABLED", "CGO_CPPFLAGS", "CGO_CFLAGS", "CGO_CXXFLAGS", "CC", "CXX"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	cmd := exec.Command(goBin, "test", "-count=1",
		"-run", "^(TestShippedModels|TestSyntheticShippedVocab|TestLoadSharedModels)$",
		"./internal/testmodels/", "./models/", "./llamacpp/")
	cmd.Dir = copyRoot
	cmd.Env = env
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in a copy of the repository (%d files in %s) failed: %v\n%s", n, copyRoot, err, res)
	}
	for _, pkg := range []string{"internal/testmodels", "lldiff/models", "lldiff/llamacpp"} {
		if !strings.Contains(string(res), pkg) {
			t.Errorf("output does not mention %s:\n%s", pkg, res)
		}
	}
	if strings.Contains(string(res), "no tests to run") {
		t.Errorf("a package ran no tests:\n%s", res)
	}
}
