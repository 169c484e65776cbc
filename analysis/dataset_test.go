package analysis

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/safetensors"
	"github.com/lldiff/lldiff/models"
)

func writePrompts(t *testing.T, lines ...string) string {
	p := filepath.Join(t.TempDir(), "prompts.txt")
	os.WriteFile(p, []byte(strings.Join(lines, "\n\n")+"\n"), 0o644) // blank lines are skipped
	return p
}

var datasetLines = []string{
	"Once upon a time there was a cat.",
	"The dog ran to the park",
	"Lily liked to play with her ball every day.",
	"Tom was sad",
	"One day, a big bird came.",
}

func captureTo(t *testing.T, e models.Engine, o DatasetOptions) (string, *DatasetIndex) {
	t.Helper()
	dir := t.TempDir()
	idx, err := CaptureDataset(e, o, func(n string) string { return filepath.Join(dir, n) })
	if err != nil {
		t.Fatal(err)
	}
	return dir, idx
}

// TestCaptureDataset captures all positions of five prompts into files
// capped small enough to hold about two prompts each, reads every file
// back with the safetensors reader and checks each row against the
// prompt run alone through the engine (Run: the full cache, an
// independent path), and index.json against the files.
func TestCaptureDataset(t *testing.T) {
	e := openReference(t, stories(t))
	hooks := []models.Hook{{Kind: models.ResidPost, Layer: 1}, {Kind: models.AttnOut, Layer: 4}}
	src := writePrompts(t, datasetLines...)
	// a row is 2×64 floats + 16 bytes of per-row tensors: 528 bytes
	o := DatasetOptions{Model: "m", Prompts: src, Hooks: hooks, Positions: RowSpec{All: true}, Spec: "all", Parallel: 2, MaxFileBytes: 20 * 528}
	dir, idx := captureTo(t, e, o)
	if len(idx.Files) < 2 || len(idx.ModelSHA256) != 64 {
		t.Fatalf("%d files, sha %q", len(idx.Files), idx.ModelSHA256)
	}
	// the prompts of the index are streamed to index.json, not kept
	back, err := ReadDatasetIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Prompts) != len(datasetLines) || back.Rows != idx.Rows || back.Hooks[0].Width != 64 {
		t.Fatalf("index.json read back: %d prompts %d rows %+v", len(back.Prompts), back.Rows, back.Hooks)
	}
	run, err := e.NewRunner(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	var rows int64
	for _, p := range back.Prompts {
		if p.Text != datasetLines[p.Index] {
			t.Fatalf("prompt %d is %q", p.Index, p.Text)
		}
		caches, err := run.Run([][]int32{p.Tokens}, hooks)
		if err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(filepath.Join(dir, back.Files[p.File].File))
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata["model_sha256"] != idx.ModelSHA256 || f.Metadata["hooks"] == "" {
			t.Errorf("metadata %v", f.Metadata)
		}
		tok, _, _ := f.Int32("token_ids")
		prm, _, _ := f.Int64("prompt")
		for _, h := range hooks {
			data, shape, err := f.Float32(h.Name())
			if err != nil {
				t.Fatal(err)
			}
			want, _ := caches[0].At(h)
			w := int(shape[1])
			for k, pos := range p.Positions {
				r := int(p.RowOffset) + k
				if tok[r] != p.Tokens[pos] || prm[r] != int64(p.Index) {
					t.Fatalf("prompt %d row %d: token %d prompt %d", p.Index, r, tok[r], prm[r])
				}
				// the reference engine computes one sequence alone either
				// way; 1e-5 of the row's scale covers a different order
				// of additions
				got, ref := data[r*w:(r+1)*w], want.Row(pos)
				for j := range got {
					if math.Abs(float64(got[j]-ref[j])) > 1e-5*(1+math.Abs(float64(ref[j]))) {
						t.Fatalf("prompt %d %s pos %d [%d]: %g, alone %g", p.Index, h.Name(), pos, j, got[j], ref[j])
					}
				}
			}
		}
		f.Close()
		rows += int64(len(p.Positions))
	}
	if rows != back.Rows {
		t.Errorf("prompts hold %d rows, index says %d", rows, back.Rows)
	}
	// every file is within the cap, or holds a single prompt
	for _, fl := range back.Files {
		if fl.Bytes > o.MaxFileBytes+4096 && fl.Prompts[1]-fl.Prompts[0] > 1 {
			t.Errorf("%s: %d bytes for %d prompts, cap %d", fl.File, fl.Bytes, fl.Prompts[1]-fl.Prompts[0], o.MaxFileBytes)
		}
	}
	checkNumpyDataset(t, dir, back)

	// two shards hold the prompts of the whole, each once
	seen := map[int]bool{}
	for k := range 2 {
		o.Shard = Shard{k, 2}
		sd, _ := captureTo(t, e, o)
		si, err := ReadDatasetIndex(sd)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range si.Prompts {
			if seen[p.Index] {
				t.Errorf("prompt %d in two shards", p.Index)
			}
			seen[p.Index] = true
		}
	}
	if len(seen) != len(datasetLines) {
		t.Errorf("shards hold %d of %d prompts", len(seen), len(datasetLines))
	}
	// --pos last: one row per prompt
	o.Shard, o.Positions = Shard{}, RowSpec{Indices: []int{-1}}
	_, li := captureTo(t, e, o)
	if li.Rows != int64(len(datasetLines)) {
		t.Errorf("--pos last: %d rows", li.Rows)
	}
}

// checkNumpyDataset loads every file with numpy (json header + memmap, as
// in internal/safetensors' test; safetensors.numpy.load_file too where
// installed) and compares the sum of each hook's tensor with ours.
func checkNumpyDataset(t *testing.T, dir string, idx *DatasetIndex) {
	py := ""
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(c, "-c", "import numpy").Run() == nil {
			py = c
			break
		}
	}
	if py == "" {
		t.Log("no python3 with numpy: numpy check skipped")
		return
	}
	script := `
import json, struct, sys
import numpy as np
out = {}
for p in sys.argv[1:]:
    with open(p, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        hdr = json.loads(fh.read(n))
    for name, e in hdr.items():
        if name == "__metadata__" or e["dtype"] != "F32":
            continue
        off = 8 + n + e["data_offsets"][0]
        a = np.memmap(p, dtype="<f4", mode="r", offset=off, shape=tuple(e["shape"]))
        out[name] = out.get(name, 0.0) + float(np.asarray(a, dtype=np.float64).sum())
    try:
        from safetensors.numpy import load_file
        load_file(p)
    except ImportError:
        pass
print(json.dumps(out))
`
	args := []string{"-c", script}
	for _, f := range idx.Files {
		args = append(args, filepath.Join(dir, f.File))
	}
	b, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy: %v: %s", err, b)
	}
	var sums map[string]float64
	if err := json.Unmarshal(b, &sums); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	for _, h := range idx.Hooks {
		var want float64
		for _, fl := range idx.Files {
			f, _ := safetensors.Open(filepath.Join(dir, fl.File))
			x, _, _ := f.Float32(h.Hook)
			f.Close()
			for _, v := range x {
				want += float64(v)
			}
		}
		// float64 sums of the same float32 values in another order
		if math.Abs(sums[h.Hook]-want) > 1e-9*(1+math.Abs(want)) {
			t.Errorf("%s: numpy sums %g, we %g", h.Hook, sums[h.Hook], want)
		}
	}
}

func TestCaptureDatasetErrors(t *testing.T) {
	e := openReference(t, stories(t))
	hooks := []models.Hook{{Kind: models.ResidPost, Layer: 0}}
	o := DatasetOptions{Prompts: writePrompts(t, "a b c", "Tom"), Hooks: hooks, Positions: RowSpec{Indices: []int{5}}, Parallel: 1, MaxFileBytes: 1 << 20}
	dir := t.TempDir()
	if _, err := CaptureDataset(e, o, func(n string) string { return filepath.Join(dir, n) }); err == nil || !strings.Contains(err.Error(), "prompts.txt:1") {
		t.Errorf("position past the prompt: %v", err)
	}
	o.Positions, o.Shard = RowSpec{All: true}, Shard{0, 3} // prompts [0, 0)
	if _, err := CaptureDataset(e, o, func(n string) string { return filepath.Join(dir, n) }); err == nil || !strings.Contains(err.Error(), "no prompts") {
		t.Errorf("empty shard: %v", err)
	}
}
