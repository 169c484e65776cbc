package reference

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// TestGemma3 checks what gemma3 changes in the reference, by properties:
//   - five layers in six attend within the window (4 here) and the sixth
//     globally: with the first token changed, z at position 6 is unchanged
//     in layers 0..4 as far as their own inputs are (layer 0) and changed
//     in layer 5;
//   - the per-head q and k norms make W_Q and W_K scale-free;
//   - there is no soft-cap: the logits are W_U ln_final.
func TestGemma3(t *testing.T) {
	g, path := writeLNModel(t, "gemma3", func(s *models.SynthSpec) {
		s.NLayer, s.NHeadKV, s.HeadDim, s.SlidingWindow = 6, 2, 16, 4
	})
	c, gc := g.Config, g.gemma
	if c.Arch != "gemma3" || c.RopeBase != 1e6 || gc.swaBase != 10000 || gc.attnSoftcap != 0 || gc.finalSoftcap != 0 || gc.window != 4 ||
		!gc.swa[0] || !gc.swa[4] || gc.swa[5] || len(g.layers[0].qNorm) != 16 {
		t.Fatalf("config %+v gemma %+v", c, gc)
	}
	tokens := []int32{1, 450, 4996, 17354, 1701, 29916, 975}
	res := mustRun(t, g, tokens)
	res2 := mustRun(t, g, append([]int32{2}, tokens[1:]...))
	if e := RelL2(mustGet(t, res2, "blocks.0.attn.hook_z")[6], mustGet(t, res, "blocks.0.attn.hook_z")[6]); e != 0 {
		t.Errorf("layer 0 (window 4): z at position 6 moved by %.3g when token 0 changed", e)
	}
	if e := RelL2(mustGet(t, res2, "blocks.5.attn.hook_z")[6], mustGet(t, res, "blocks.5.attn.hook_z")[6]); e == 0 {
		t.Error("layer 5 (global): z at position 6 did not move when token 0 changed")
	}
	scaled := rewriteTensors(t, path, func(name string, v []float32) {
		if strings.HasSuffix(name, ".attn_q.weight") || strings.HasSuffix(name, ".attn_k.weight") {
			for i := range v {
				v[i] *= 8
			}
		}
	})
	a, b := mustGet(t, res, "logits"), mustGet(t, mustRun(t, scaled, tokens), "logits")
	for p := range a {
		if e := RelL2(b[p], a[p]); e > 1e-5 {
			t.Errorf("logits[%d]: W_Q, W_K ×8 moved them by %.3g; the head norms should cancel the scale", p, e)
		}
	}
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := f.ReadTensorFloat32("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	ln := mustGet(t, res, "ln_final.hook_normalized")
	for p := range tokens {
		for v := 0; v < c.NVocab; v += 1009 {
			var s float64
			for i := range c.DModel {
				s += float64(emb[v*c.DModel+i]) * float64(ln[p][i])
			}
			// float32 rounding of the logit
			if d := float64(a[p][v]) - s; d > 1e-5 || d < -1e-5 {
				t.Fatalf("logits[%d][%d] = %g, want the uncapped W_U · ln_final = %g", p, v, a[p][v], s)
			}
		}
	}
}
