package cli

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/safetensors"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestCaptureDatasetCLI captures a prompt file as a dataset and checks the
// rows of one prompt against `capture PROMPT` of that prompt alone (the
// .npy path); a rerun is skipped.
func TestCaptureDatasetCLI(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	a, _ := shardPrompts(t, 4)
	dir := filepath.Join(t.TempDir(), "ds")
	if _, _, err := run(t, false, "capture", "-m", model, "--prompts", a, "--hooks", "resid_post.2", "-o", dir, "-P", "3"); err != nil {
		t.Fatal(err)
	}
	idx, err := analysis.ReadDatasetIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := idx.Prompts[2]
	one := filepath.Join(t.TempDir(), "one")
	if _, _, err := run(t, false, "capture", "-m", model, "--hooks", "resid_post.2", "-o", one, p.Text); err != nil {
		t.Fatal(err)
	}
	want, err := readNpyFile(filepath.Join(one, "blocks.2.hook_resid_post.npy"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, idx.Files[p.File].File))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, shape, err := f.Float32("blocks.2.hook_resid_post")
	if err != nil {
		t.Fatal(err)
	}
	w := int(shape[1])
	rows := got[int(p.RowOffset)*w : (int(p.RowOffset)+len(p.Positions))*w]
	if len(rows) != len(want) {
		t.Fatalf("%d values in the dataset, %d captured alone", len(rows), len(want))
	}
	// batched with other prompts vs alone: llama.cpp's batch rounding,
	// about 1e-6 of the row norm; 1e-4 absolute on activations of norm < 10
	for i := range rows {
		if math.Abs(float64(rows[i]-want[i])) > 1e-4 {
			t.Fatalf("value %d: %g in the dataset, %g alone", i, rows[i], want[i])
		}
	}
	_, stderr, err := run(t, false, "capture", "-m", model, "--prompts", a, "--hooks", "resid_post.2", "-o", dir)
	if err != nil || !strings.Contains(stderr, "skipped") {
		t.Errorf("rerun: %v %s", err, stderr)
	}
	if _, _, err := run(t, false, "capture", "-m", model, "--prompts", a, "-o", dir, "hello"); err == nil || !strings.Contains(err.Error(), "drop the prompt argument") {
		t.Errorf("--prompts with a prompt: %v", err)
	}
}
