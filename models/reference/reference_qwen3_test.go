package reference

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// rewriteTensors writes the file at path again with each tensor's values
// passed through edit (F32 tensors only; others are copied), and loads it.
func rewriteTensors(t *testing.T, path string, edit func(name string, v []float32)) *Model {
	t.Helper()
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var w models.Writer
	for _, kv := range f.KVs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		b, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Type == models.F32 {
			v := make([]float32, len(b)/4)
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
			edit(ti.Name, v)
			b = make([]byte, len(b))
			for i, x := range v {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
			}
		}
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "edited.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, p)
}

// TestQwen3 checks what tells qwen3 from qwen2 in the reference, by
// properties that do not depend on the code under test computing them:
//   - the per-head RMSNorm makes q and k scale-free: W_Q and W_K multiplied
//     by 8 change no hook beyond the epsilon's share (eps 1e-6 against a
//     mean square of about 1), while the same change without the norms
//     (the file relabelled qwen2, per-head norm weights dropped) sharpens
//     the attention and moves z by far more;
//   - z at position 0 is the value vector of its kv head whatever q and k
//     are, so the relabelled model agrees there exactly;
//   - the norm weights are used: doubling one head dimension of
//     attn_q_norm changes z at later positions.
//
// The model has 4 query heads of 16 over d_model 32, so that q spans more
// than d_model, as in Qwen3.
func TestQwen3(t *testing.T) {
	q, path := writeLNModel(t, "qwen3", func(s *models.SynthSpec) { s.NHeadKV, s.HeadDim = 2, 16 })
	c := q.Config
	if c.Arch != "qwen3" || c.DHead != 16 || c.NHead*c.DHead != 64 || c.DModel != 32 || c.RopeDim != 16 || c.RopeBase != 1e6 || !q.TiedEmbeddings {
		t.Fatalf("config %+v tied %v", c, q.TiedEmbeddings)
	}
	for l, ly := range q.layers {
		if len(ly.qNorm) != 16 || len(ly.kNorm) != 16 || ly.wq.b != nil || ly.wq.out != 64 || ly.wo.in != 64 {
			t.Fatalf("layer %d: q norm %d, k norm %d, q bias %d, W_Q out %d, W_O in %d", l, len(ly.qNorm), len(ly.kNorm), len(ly.wq.b), ly.wq.out, ly.wo.in)
		}
	}
	tokens := []int32{464, 2068, 7586, 21831, 18045, 625}
	base := mustRun(t, q, tokens)
	scaleQK := func(name string, v []float32) {
		if strings.HasSuffix(name, ".attn_q.weight") || strings.HasSuffix(name, ".attn_k.weight") {
			for i := range v {
				v[i] *= 8
			}
		}
	}
	scaled := mustRun(t, rewriteTensors(t, path, scaleQK), tokens)
	for _, name := range []string{"blocks.0.attn.hook_z", "blocks.1.attn.hook_z", "logits"} {
		a, b := mustGet(t, base, name), mustGet(t, scaled, name)
		for p := range a {
			// float32 rounding of the scaled weights and eps/ms ≈ 1e-6
			if e := RelL2(b[p], a[p]); e > 1e-5 {
				t.Errorf("%s[%d]: W_Q, W_K ×8 moved it by %.3g; the per-head norms should cancel the scale", name, p, e)
			}
		}
	}

	// relabelled qwen2: no head norms
	q2, path2 := rewriteQwen3As2(t, path)
	z2 := mustGet(t, mustRun(t, q2, tokens), "blocks.0.attn.hook_z")
	z2s := mustGet(t, mustRun(t, rewriteTensors(t, path2, scaleQK), tokens), "blocks.0.attn.hook_z")
	if e := RelL2(z2s[len(tokens)-1], z2[len(tokens)-1]); e < 1e-3 {
		t.Errorf("without head norms W_Q, W_K ×8 moved z of the last position by only %.3g: the scale test above cannot fail", e)
	}
	z3 := mustGet(t, base, "blocks.0.attn.hook_z")
	if e := RelL2(z2[0], z3[0]); e != 0 {
		t.Errorf("position 0: z without head norms differs by %.3g, want 0 (z[0] is the value vector)", e)
	}
	moved := 0.0
	for p := 1; p < len(tokens); p++ {
		moved = math.Max(moved, RelL2(z2[p], z3[p]))
	}
	if moved < 1e-3 {
		t.Errorf("z without the head norms agrees with qwen3's to %.3g at every later position", moved)
	}

	// the weights of the q norm are used
	bump := func(name string, v []float32) {
		if name == "blk.0.attn_q_norm.weight" {
			v[3] *= 2
		}
	}
	zb := mustGet(t, mustRun(t, rewriteTensors(t, path, bump), tokens), "blocks.0.attn.hook_z")
	if e := RelL2(zb[0], z3[0]); e != 0 {
		t.Errorf("position 0: a changed q norm moved z[0] by %.3g, want 0", e)
	}
	if e := RelL2(zb[len(tokens)-1], z3[len(tokens)-1]); e < 1e-4 {
		t.Errorf("a doubled q-norm weight left z of the last position unchanged (%.3g)", e)
	}
}

// rewriteQwen3As2 writes the qwen3 file at path again as qwen2 (keys
// moved, head-norm tensors dropped) and loads it.
func rewriteQwen3As2(t *testing.T, path string) (*Model, string) {
	t.Helper()
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var w models.Writer
	for _, kv := range f.KVs {
		k, v := kv.Key, kv.Value
		if k == "general.architecture" {
			v = "qwen2"
		}
		if rest, ok := strings.CutPrefix(k, "qwen3."); ok {
			k = "qwen2." + rest
		}
		if err := w.AddKV(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		if strings.Contains(ti.Name, ".attn_q_norm.") || strings.Contains(ti.Name, ".attn_k_norm.") {
			continue
		}
		b, _ := f.ReadTensor(ti.Name)
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "qwen2.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, p), p
}
