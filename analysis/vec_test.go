package analysis

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/models"
)

// writeNpy writes v as a .npy vector and returns its path.
func writeNpy(t *testing.T, path string, v []float32) string {
	t.Helper()
	if err := npy.WriteFile(path, []int{len(v)}, v); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVecVectors compares three single vectors: cosines and projections
// from their definitions, and null where a zero vector has no direction.
func TestVecVectors(t *testing.T) {
	dir := t.TempDir()
	var srcs []*VecSource
	for _, v := range []struct {
		name string
		v    []float32
	}{{"x.npy", []float32{3, 0}}, {"diag.npy", []float32{1, 1}}, {"zero.npy", []float32{0, 0}}} {
		s, err := LoadVecSource(writeNpy(t, filepath.Join(dir, v.name), v.v), VecLoadOptions{Method: "mean", CvecOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind != "npy" {
			t.Fatalf("%s: kind %q", v.name, s.Kind)
		}
		srcs = append(srcs, s)
	}
	r, err := Vec(nil, VecOptions{Sources: srcs})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Hooks) != 1 || r.Hooks[0].Hook != "vector" || len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "zero.npy is a zero vector") {
		t.Fatalf("hooks %+v, notes %q", r.Hooks, r.Notes)
	}
	h := r.Hooks[0]
	// one division each, of small integers and square roots: 1e-15
	near := func(name string, p *float64, want float64) {
		t.Helper()
		if p == nil || math.Abs(*p-want) > 1e-15 {
			t.Errorf("%s = %v, want %v", name, p, want)
		}
	}
	near("norm x", &h.Norms[0], 3)
	near("cos(x, diag)", h.Cosine[0][1], 1/math.Sqrt2)
	near("cos(diag, x)", h.Cosine[1][0], 1/math.Sqrt2)
	near("x·û(diag)", h.Projection[0][1], 3/math.Sqrt2)
	near("diag·û(x)", h.Projection[1][0], 1)
	near("zero·û(x)", h.Projection[2][0], 0)
	if h.Cosine[0][2] != nil || h.Cosine[2][0] != nil || h.Cosine[2][2] != nil || h.Projection[0][2] != nil {
		t.Errorf("cosines with the zero vector %v, projection onto it %v; want null", h.Cosine, h.Projection[0][2])
	}
}

// TestVecPairs runs prompt pairs on every engine: " ran" − " sat" after
// Tom and after Lily point the same way at resid_post.0, unlike " dog" −
// " cat"; the matrix is symmetric with ones on the diagonal.
func TestVecPairs(t *testing.T) {
	forEngines(t, stories(t), func(t *testing.T, e models.Engine) {
		var srcs []*VecSource
		for _, p := range []string{"Tom ran|Tom sat", "Lily ran|Lily sat", "the dog|the cat"} {
			s, err := LoadVecSource(p, VecLoadOptions{Method: "mean", CvecOffset: -1})
			if err != nil {
				t.Fatal(err)
			}
			srcs = append(srcs, s)
		}
		if _, err := Vec(nil, VecOptions{Sources: srcs, Pos: RowSpec{Indices: []int{-1}}}); !isInputError(err) {
			t.Errorf("pairs without an engine: err = %v, want an InputError", err)
		}
		r, err := Vec(e, VecOptions{Sources: srcs, Hooks: "resid_post.0,resid_post.3", Pos: RowSpec{Indices: []int{-1}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Hooks) != 2 || r.Hooks[0].Hook != "blocks.0.hook_resid_post" {
			t.Fatalf("hooks %+v", r.Hooks)
		}
		c := r.Hooks[0].Cosine
		for i := range c {
			for j := range c {
				// diff.Cosine divides by one product: symmetric bit for
				// bit, and 1 on the diagonal to rounding
				if *c[i][j] != *c[j][i] || (i == j && math.Abs(*c[i][i]-1) > 1e-12) {
					t.Errorf("cosine[%d][%d] = %v, [%d][%d] = %v", i, j, *c[i][j], j, i, *c[j][i])
				}
			}
		}
		if *c[0][1] < 0.8 || math.Abs(*c[0][2]) > 0.5 {
			t.Errorf("cos(Tom ran−sat, Lily ran−sat) = %v, cos(…, dog−cat) = %v", *c[0][1], *c[0][2])
		}
		if _, err := Vec(e, VecOptions{Sources: srcs, Pos: RowSpec{All: true}}); !isInputError(err) {
			t.Errorf("--pos all: err = %v, want an InputError", err)
		}
	})
}

// TestSplitPair: a prompt pair has one unescaped |; \| is a bar and \\
// a backslash inside a prompt, and a second bare | is refused (it was
// split at the first one silently).
func TestSplitPair(t *testing.T) {
	for _, tc := range []struct {
		arg, a, b string
		ok        bool
		err       string
	}{
		{arg: "father|mother", a: "father", b: "mother", ok: true},
		{arg: "no bar", ok: false},
		{arg: `x \| y|z`, a: "x | y", b: "z", ok: true},
		{arg: `a|b \| c`, a: "a", b: "b | c", ok: true},
		{arg: `back\\|slash`, a: `back\`, b: "slash", ok: true},
		{arg: `keep \n|as is\`, a: `keep \n`, b: `as is\`, ok: true},
		{arg: `only \| escaped`, ok: false},
		{arg: "a|b|c", err: "more than one |"},
		{arg: `a\\|b|c`, err: "more than one |"},
	} {
		a, b, ok, err := SplitPair(tc.arg)
		if tc.err != "" {
			if !isInputError(err) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), `\|`) {
				t.Errorf("SplitPair(%q): err = %v, want an InputError saying %q and offering \\|", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || ok != tc.ok || a != tc.a || b != tc.b {
			t.Errorf("SplitPair(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.arg, a, b, ok, err, tc.a, tc.b, tc.ok)
		}
	}
	if _, err := LoadVecSource("a|b|c", VecLoadOptions{Method: "mean", CvecOffset: -1}); !isInputError(err) {
		t.Errorf(`LoadVecSource("a|b|c"): err = %v, want an InputError`, err)
	}
	s, err := LoadVecSource(`1 \| 2|3`, VecLoadOptions{Method: "mean", CvecOffset: -1})
	if err != nil || s.Kind != "pair" || s.Prompts != [2]string{"1 | 2", "3"} || s.Name != `1 \| 2|3` {
		t.Errorf("LoadVecSource with an escaped bar: %+v, %v", s, err)
	}
}

func isInputError(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}

// vecDir writes a --save-vectors directory holding one mean difference
// and returns it with the file's entry in index.json.
func vecDir(t *testing.T, files ...VectorFile) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vecs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeNpy(t, filepath.Join(dir, "resid_post.1.npy"), []float32{1, 2, 3, 4})
	idx := VectorIndex{Files: files}
	b, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func entry(file string, shape ...int) VectorFile {
	return VectorFile{File: file, Hook: "blocks.1.hook_resid_post", Kind: "resid_post", Layer: 1, Method: "mean_diff", Shape: shape}
}

// TestLoadVectorDirConfined: index.json can name only files inside its
// directory, and each file must be as index.json describes it.
func TestLoadVectorDirConfined(t *testing.T) {
	outside := writeNpy(t, filepath.Join(t.TempDir(), "outside.npy"), []float32{9, 9, 9, 9})
	for _, tc := range []struct {
		name  string
		entry VectorFile
		setup func(t *testing.T, dir string)
		err   string // "" loads
	}{
		{name: "inside", entry: entry("resid_post.1.npy", 4)},
		{name: "no shape recorded", entry: entry("resid_post.1.npy")},
		{name: "inside a folder", entry: entry("sub/v.npy", 4), setup: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
			writeNpy(t, filepath.Join(dir, "sub", "v.npy"), []float32{1, 2, 3, 4})
		}},
		{name: "link inside", entry: entry("link.npy", 4), setup: func(t *testing.T, dir string) {
			symlink(t, "resid_post.1.npy", filepath.Join(dir, "link.npy"))
		}},
		{name: "absolute", entry: entry(outside, 4), err: "an absolute path"},
		{name: "parent", entry: entry("../outside.npy", 4), err: "a .. component"},
		{name: "parent in the middle", entry: entry("sub/../../outside.npy", 4), err: "a .. component"},
		{name: "parent that stays inside", entry: entry("sub/../resid_post.1.npy", 4), err: "a .. component"},
		{name: "link out", entry: entry("link.npy", 4), err: "outside the directory", setup: func(t *testing.T, dir string) {
			symlink(t, outside, filepath.Join(dir, "link.npy"))
		}},
		{name: "folder linked out", entry: entry("sub/outside.npy", 4), err: "outside the directory", setup: func(t *testing.T, dir string) {
			symlink(t, filepath.Dir(outside), filepath.Join(dir, "sub"))
		}},
		{name: "index.json linked out", entry: entry("resid_post.1.npy", 4), err: "not a --save-vectors directory", setup: func(t *testing.T, dir string) {
			other := filepath.Join(filepath.Dir(outside), "index.json")
			os.Rename(filepath.Join(dir, "index.json"), other)
			symlink(t, other, filepath.Join(dir, "index.json"))
		}},
		{name: "truncated", entry: entry("resid_post.1.npy", 4), err: "looks incomplete or was modified after it was written", setup: func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "resid_post.1.npy"), npy.FileSize([]int{4})-4)
		}},
		{name: "grown", entry: entry("resid_post.1.npy", 4), err: "has 208 bytes, index.json records shape [4] (144 bytes)", setup: func(t *testing.T, dir string) {
			writeNpy(t, filepath.Join(dir, "resid_post.1.npy"), make([]float32, 20))
		}},
		{name: "other shape of the same size", entry: entry("resid_post.1.npy", 1, 4), err: "has shape [4], index.json records [1 4]"},
		{name: "a folder", entry: entry("sub", 4), err: "not a regular file", setup: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
		}},
		{name: "a pipe", entry: entry("fifo"), err: "not a regular file", setup: func(t *testing.T, dir string) {
			if err := mkfifo(filepath.Join(dir, "fifo")); err != nil {
				t.Skip("no FIFOs here:", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := vecDir(t, tc.entry)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			src, err := LoadVectorDir(dir, "mean")
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				v := src.Vecs[models.Hook{Kind: models.ResidPost, Layer: 1}]
				if len(v) != 4 || v[0] != 1 || v[3] != 4 {
					t.Errorf("read %v, want [1 2 3 4]", v)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
}
