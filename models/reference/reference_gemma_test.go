package reference

import (
	"math"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// TestGemma2 checks gemma2's parts in the reference against computations
// of its own (llama.cpp's agreement is in package llamacpp):
//   - resid_pre of layer 0 is the embedding row times sqrt(d_model);
//   - attn_out and mlp_out are RMS-normalized by their post-norms: divided
//     by the norm weights their mean square is 1 (up to eps 1e-6);
//   - the logits are c·tanh(W_U ln_final / c), with W_U the embedding;
//   - layer 0 attends within the sliding window of 4 positions: changing
//     the first token leaves its z unchanged from position 4 on, while
//     layer 1 (global) and every position before 4 change.
func TestGemma2(t *testing.T) {
	g, path := writeLNModel(t, "gemma2", func(s *models.SynthSpec) {
		s.NHeadKV, s.HeadDim, s.SlidingWindow, s.FinalSoftcap = 2, 16, 4, 5
	})
	c := g.Config
	if c.Arch != "gemma2" || c.DHead != 16 || c.NHead*c.DHead != 64 || !g.TiedEmbeddings || g.gemma.window != 4 ||
		g.gemma.finalSoftcap != 5 || g.gemma.attnSoftcap != 50 || !g.gemma.swa[0] || g.gemma.swa[1] {
		t.Fatalf("config %+v gemma %+v", c, g.gemma)
	}
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := f.ReadTensorFloat32("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int32{1, 450, 4996, 17354, 1701, 29916, 975, 278}
	res := mustRun(t, g, tokens)
	pre := mustGet(t, res, "blocks.0.hook_resid_pre")
	sq := float32(math.Sqrt(32))
	for p, tok := range tokens {
		for i := range c.DModel {
			if want := emb[int(tok)*32+i] * sq; pre[p][i] != want {
				t.Fatalf("resid_pre.0[%d][%d] = %g, want embedding · sqrt(32) = %g", p, i, pre[p][i], want)
			}
		}
	}
	for _, tc := range []struct{ hook, weight string }{
		{"blocks.1.hook_attn_out", "blk.1.post_attention_norm.weight"},
		{"blocks.0.hook_mlp_out", "blk.0.post_ffw_norm.weight"},
	} {
		w, err := f.ReadTensorFloat32(tc.weight)
		if err != nil {
			t.Fatal(err)
		}
		for p, row := range mustGet(t, res, tc.hook) {
			var ms float64
			for i, v := range row {
				ms += float64(v/w[i]) * float64(v/w[i])
			}
			if ms /= float64(len(row)); math.Abs(ms-1) > 1e-4 {
				t.Errorf("%s[%d]: mean square %.6f after dividing by %s, want 1", tc.hook, p, ms, tc.weight)
			}
		}
	}
	ln := mustGet(t, res, "ln_final.hook_normalized")
	logits := mustGet(t, res, "logits")
	for p := range tokens {
		for v := 0; v < c.NVocab; v += 997 {
			var s float64
			for i := range c.DModel {
				s += float64(emb[v*32+i]) * float64(ln[p][i])
			}
			want := 5 * math.Tanh(s/5)
			// float32 rounding of the logit and of the dot product
			if math.Abs(float64(logits[p][v])-want) > 1e-5 {
				t.Fatalf("logits[%d][%d] = %g, want 5·tanh(%g/5) = %g", p, v, logits[p][v], s, want)
			}
		}
	}

	other := append([]int32{2}, tokens[1:]...)
	res2 := mustRun(t, g, other)
	for _, tc := range []struct {
		hook  string
		p     int
		equal bool
	}{
		{"blocks.0.attn.hook_z", 3, false}, {"blocks.0.attn.hook_z", 4, true}, {"blocks.0.attn.hook_z", 7, true},
		{"blocks.1.attn.hook_z", 7, false},
	} {
		a, b := mustGet(t, res, tc.hook)[tc.p], mustGet(t, res2, tc.hook)[tc.p]
		if e := RelL2(b, a); (e == 0) != tc.equal {
			t.Errorf("%s[%d] with the first token changed moved by %.3g; want it %s", tc.hook, tc.p, e,
				map[bool]string{true: "unchanged (outside the window)", false: "changed"}[tc.equal])
		}
	}
}
