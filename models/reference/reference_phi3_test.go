package reference

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// TestPhi3 checks phi3's fused matrices in the reference: the same weights
// written as a bias-free qwen2 file (separate attn_q, attn_k and attn_v
// cut from attn_qkv's rows, ffn_gate and ffn_up cut from the two halves of
// ffn_up; qwen2 also rotates NEOX-style) compute every hook identically,
// and swapping the gate and up halves changes mlp_out.
func TestPhi3(t *testing.T) {
	ph, path := writeLNModel(t, "phi3", func(s *models.SynthSpec) { s.Untied = true })
	c := ph.Config
	if c.Arch != "phi3" || c.RopeDim != c.DHead || c.RopeBase != 10000 || c.DModel != 32 || c.DFF != 64 || ph.TiedEmbeddings {
		t.Fatalf("config %+v tied %v", c, ph.TiedEmbeddings)
	}
	tokens := []int32{1, 450, 4996, 17354, 1701, 29916}
	got := mustRun(t, ph, tokens)

	split := func(swap bool) *Model {
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
			if rest, ok := strings.CutPrefix(k, "phi3."); ok {
				k = "qwen2." + rest
			}
			if err := w.AddKV(k, v); err != nil {
				t.Fatal(err)
			}
		}
		d, ff := uint64(c.DModel), uint64(c.DFF)
		row := 4 * d // F32 rows of d_model values
		for _, ti := range f.Tensors {
			b, err := f.ReadTensor(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			add := func(name string, rows uint64, data []byte) {
				if err := w.AddTensor(name, ti.Type, []uint64{d, rows}, data); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case strings.HasSuffix(ti.Name, ".attn_qkv.weight"):
				p := strings.TrimSuffix(ti.Name, "attn_qkv.weight")
				add(p+"attn_q.weight", d, b[:d*row])
				add(p+"attn_k.weight", d, b[d*row:2*d*row])
				add(p+"attn_v.weight", d, b[2*d*row:])
			case strings.HasSuffix(ti.Name, ".ffn_up.weight"):
				p := strings.TrimSuffix(ti.Name, "ffn_up.weight")
				gate, up := b[:ff*row], b[ff*row:]
				if swap {
					gate, up = up, gate
				}
				add(p+"ffn_gate.weight", ff, gate)
				add(p+"ffn_up.weight", ff, up)
			default:
				if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
					t.Fatal(err)
				}
			}
		}
		p := filepath.Join(t.TempDir(), fmt.Sprintf("qwen2-%v.gguf", swap))
		if err := w.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		return mustLoad(t, p)
	}
	want := mustRun(t, split(false), tokens)
	if len(got.Names()) != 14 {
		t.Errorf("phi3 hooks %v, want 14 (6 per layer, ln_final, logits)", got.Names())
	}
	for _, name := range got.Names() {
		g, w := mustGet(t, got, name), mustGet(t, want, name)
		for p := range w {
			// the same float64 sums in the same order: equal
			if e := RelL2(g[p], w[p]); e != 0 {
				t.Errorf("%s[%d]: phi3 and its split qwen2 form differ by %.3g", name, p, e)
			}
		}
	}
	swapped := mustRun(t, split(true), tokens)
	if e := RelL2(mustGet(t, swapped, "blocks.0.hook_mlp_out")[0], mustGet(t, got, "blocks.0.hook_mlp_out")[0]); e < 0.1 {
		t.Errorf("gate and up swapped: mlp_out moved by only %.3g", e)
	}
}
