package reference

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// rewriteQwen2 writes the qwen2 file at path again, with every key under
// "qwen2." moved under arch+"." and general.architecture set to arch, and
// without the tensors drop names, and loads it.
func rewriteQwen2(t *testing.T, path, arch string, drop func(string) bool) *Model {
	t.Helper()
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var w models.Writer
	for _, kv := range f.KVs {
		k, v := kv.Key, kv.Value
		if k == "general.architecture" {
			v = arch
		}
		if rest, ok := strings.CutPrefix(k, "qwen2."); ok {
			k = arch + "." + rest
		}
		if err := w.AddKV(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		if drop != nil && drop(ti.Name) {
			continue
		}
		b, _ := f.ReadTensor(ti.Name)
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), arch+".gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, p)
}

// TestQwen2 checks what tells qwen2 from llama in the reference: the
// biases on Q, K and V are read and used, and RoPE rotates NEOX-style. The
// same file labelled llama (whose loader also takes q, k and v biases)
// computes the same layer-0 z at position 0, where RoPE is the identity,
// and a different one at every later position; the file without its
// biases computes a different z already at position 0 (z of the first
// position is its value vector, bias included).
func TestQwen2(t *testing.T) {
	q, path := writeLNModel(t, "qwen2", func(s *models.SynthSpec) { s.NHeadKV, s.Untied = 2, true })
	c := q.Config
	if c.Arch != "qwen2" || c.RopeDim != c.DHead || c.RopeBase != 1e6 || c.NHeadKV != 2 || q.TiedEmbeddings {
		t.Errorf("config %+v tied %v", c, q.TiedEmbeddings)
	}
	for l, ly := range q.layers {
		if len(ly.wq.b) != c.NHead*c.DHead || len(ly.wk.b) != c.NHeadKV*c.DHead || len(ly.wv.b) != c.NHeadKV*c.DHead || ly.wo.b != nil {
			t.Errorf("layer %d biases: q %d, k %d, v %d, o %d", l, len(ly.wq.b), len(ly.wk.b), len(ly.wv.b), len(ly.wo.b))
		}
	}
	tokens := []int32{464, 2068, 7586, 21831, 18045}
	zq := mustGet(t, mustRun(t, q, tokens), "blocks.0.attn.hook_z")

	l := rewriteQwen2(t, path, "llama", nil)
	if l.Config.Arch != "" || len(l.layers[0].wq.b) == 0 {
		t.Fatalf("relabelled as llama: config %+v, q bias %d", l.Config, len(l.layers[0].wq.b))
	}
	zl := mustGet(t, mustRun(t, l, tokens), "blocks.0.attn.hook_z")
	// Both sides compute position 0 with the same float64 sums: exactly
	// equal. Later positions differ by the rotation, of order 1.
	if e := RelL2(zl[0], zq[0]); e != 0 {
		t.Errorf("position 0: llama and qwen2 z differ by %.3g, want 0 (RoPE at position 0 is the identity)", e)
	}
	for p := 1; p < len(tokens); p++ {
		if e := RelL2(zl[p], zq[p]); e < 1e-3 {
			t.Errorf("position %d: llama (NORM) and qwen2 (NEOX) rotations give the same z (%.3g)", p, e)
		}
	}

	nb := rewriteQwen2(t, path, "qwen2", func(name string) bool { return strings.HasSuffix(name, ".bias") })
	zn := mustGet(t, mustRun(t, nb, tokens), "blocks.0.attn.hook_z")
	// biases are 0.1·N(0,1) against value rows of norm about 4
	if e := RelL2(zn[0], zq[0]); e < 0.01 {
		t.Errorf("without its biases the model computes the same z at position 0 (%.3g)", e)
	}
}
