package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// The geometry commands end to end on the shipped models: params, map,
// compare --model-b and steer --direction. The numbers are checked in
// package analysis; these tests check the flags, the JSON documents and
// the files written.

func TestParamsCommand(t *testing.T) {
	m := testmodels.Path(t, testmodels.Stories260K)
	out, _, err := run(t, false, "params", "--json", "-m", m, "--layer", "2", "--neuron", "3,7", "--head", "1", "-k", "4", "--pairs", "3")
	if err != nil {
		t.Fatal(err)
	}
	var doc ParamsJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Layer != 2 || len(doc.Neurons) != 2 || doc.Neurons[1].Index != 7 || len(doc.Neurons[0].Write.Top) != 4 ||
		len(doc.Heads) != 1 || doc.Heads[0].KVHead != 0 || len(doc.Heads[0].OV.Top) != 3 || doc.LensNorm != "raw" {
		t.Fatalf("unexpected document: %+v", doc)
	}
	// a table run with --along on a prompt pair prints the checked sums
	out, _, err = run(t, false, "params", "-m", m, "--layer", "3", "--along", "The girl ran. She|The boy ran. He", "--rank", "3", "--top", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sum over all 172 neurons", "sum over all 8 heads", "== neuron "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestGeometryUsageErrors(t *testing.T) {
	m := testmodels.Path(t, testmodels.Stories260K)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"params", "-m", m, "--neuron", "1"}, "--layer"},
		{[]string{"params", "-m", m, "--layer", "1"}, "nothing to read"},
		{[]string{"params", "-m", m, "--layer", "1", "--neuron", "x"}, "--neuron"},
		{[]string{"params", "-m", m, "--layer", "9", "--neuron", "1"}, "layers 0..4"},
		{[]string{"params", "-m", m, "--layer", "1", "--neuron", "1", "--lens-norm", "norm"}, "raw or gamma"},
		{[]string{"params", "-m", m, "--layer", "1", "--top", "3", "--by", "act"}, "--along"},
		{[]string{"map", "-m", m}, "--prompts"},
		{[]string{"map", "-m", m, "--diffs", "a|b"}, "at least two"},
		{[]string{"compare", "-m", m, "--model-b", m, "a", "b"}, "one prompt"},
		{[]string{"compare", "-m", m, "--model-b", testmodels.Path(t, testmodels.TinyStories656KF16), "Once"}, "do not share a tokenizer"},
		{[]string{"steer", "-m", m, "--direction", "nobar", "x"}, "A|B"},
		{[]string{"compare", "-m", m, "--layer-map", "0:0", "a", "b"}, "--model-b"},
		{[]string{"compare", "-m", m, "--model-b", m, "--layer-map", "0:0", "a"}, "does not map layer 1"},
		{[]string{"steer", "-m", m, "--direction", "a|b", "--cvec", "x.gguf", "x"}, "choose one"},
	} {
		_, _, err := run(t, false, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error about %q", c.args, err, c.want)
			continue
		}
		var u *UsageError
		if !errors.As(err, &u) {
			t.Errorf("%v: %v is not a usage error", c.args, err)
		}
	}
}

func TestMapCommand(t *testing.T) {
	m := testmodels.Path(t, testmodels.Stories260K)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.tsv")
	if err := os.WriteFile(prompts, []byte("he1\tOnce upon a time, there was a boy. One day, he\nhe2\tThe boy went out. Then he\nshe1\tOnce upon a time, there was a girl. One day, she\nshe2\tThe girl went out. Then she\ncat\tThe [[cat]] sat.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plot := filepath.Join(dir, "map.svg")
	out, _, err := run(t, false, "map", "--json", "-m", m, "--prompts", prompts, "--hook", "resid_post.3", "--plot", plot, "--analogy", "he1:she1::he2:?", "--diffs", "he1|she1", "he2|she2")
	if err != nil {
		t.Fatal(err)
	}
	var doc MapJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(doc.Hooks) != 1 || len(doc.Hooks[0].PCA) != 5 || len(doc.Hooks[0].Clusters) != 5 || doc.Diffs == nil || len(doc.Diffs.Layers) != 5 {
		t.Fatalf("unexpected document: %+v", doc)
	}
	if a := doc.Hooks[0].Analogies; len(a) != 1 || a[0].Nearest[0].Label != "she2" {
		t.Errorf("he1:she1::he2:? answered %+v, want she2 first", a)
	}
	b, err := os.ReadFile(plot)
	if err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "she2") {
		t.Fatalf("plot: %v, %d bytes", err, len(b))
	}
	// the plot is not replaced without --force
	if _, _, err := run(t, false, "map", "-m", m, "--prompts", prompts, "--plot", plot); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing plot: %v", err)
	}
}

func TestCompareModelBCommand(t *testing.T) {
	a := testmodels.Path(t, testmodels.TinyStories656KF16)
	b := testmodels.Path(t, testmodels.TinyStories656KQ8)
	out, _, err := run(t, false, "compare", "--json", "-m", a, "--model-b", b, "Once upon a time", "--pos", "all")
	if err != nil {
		t.Fatal(err)
	}
	var doc ModelBJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(doc.Components) == 0 || !(doc.KLAB > 0) || len(doc.Lens) != 2 {
		t.Fatalf("unexpected document: %+v", doc)
	}
	dir := t.TempDir()
	pa := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(pa, []byte("Once upon a time\nThe dog ran to the\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, false, "contrast", "--json", "-m", a, "--model-b", b, "--a", pa, "--b", pa)
	if err != nil {
		t.Fatal(err)
	}
	var cdoc ModelBContrastJSON
	if err := json.Unmarshal([]byte(out), &cdoc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(cdoc.Prompts) != 4 || len(cdoc.Components) != 6 || !(cdoc.MeanKL > 0) {
		t.Fatalf("unexpected contrast document: %+v", cdoc)
	}
	if _, _, err := run(t, false, "contrast", "-m", a, "--model-b", b, "--a", pa, "--b", pa, "--export-cvec", filepath.Join(dir, "x.gguf")); err == nil {
		t.Error("contrast --model-b --export-cvec: no error")
	}
	out, _, err = run(t, false, "steer", "-m", testmodels.Path(t, testmodels.Stories260K), "--direction", "The girl. She|The boy. He", "--layer-range", "3:3", "--scale", "0:1:0.5", "-n", "4", "One day")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sweep: 3 scales") {
		t.Errorf("steer --direction output:\n%s", out)
	}
}

func TestParamsAlignCommand(t *testing.T) {
	a := testmodels.Path(t, testmodels.TinyStories656KF16)
	b := testmodels.Path(t, testmodels.TinyStories656KQ8)
	plot := filepath.Join(t.TempDir(), "align.png")
	out, _, err := run(t, false, "params", "--json", "-m", a, "--align", b, "--plot", plot)
	if err != nil {
		t.Fatal(err)
	}
	var doc AlignJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Q8_0 moves the weights a little: each layer matches itself, with a
	// correlation near 1
	if len(doc.Corr) != 2 || doc.Match[0] != 0 || doc.Match[1] != 1 || !(doc.Corr[0][0] > 0.99) || !(doc.Corr[0][0] < 1) {
		t.Fatalf("unexpected document: %+v", doc)
	}
	if st, err := os.Stat(plot); err != nil || st.Size() == 0 {
		t.Fatalf("plot: %v", err)
	}
	if _, _, err := run(t, false, "params", "-m", a, "--align", testmodels.Path(t, testmodels.Stories260K)); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Errorf("different vocabularies: %v", err)
	}
}
