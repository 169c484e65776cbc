package cli

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// synthQwen2 writes a small qwen2 model with lldiff synth (preset
// qwen2-tiny: 2 layers, d_model 64 in 4 heads, 2 kv heads, d_ff 128,
// untied) and its default vocabulary, GPT-2's BPE standing in for Qwen2's.
func synthQwen2(t *testing.T, typ string) string {
	t.Helper()
	testmodels.Path(t, testmodels.VocabGPT2) // the default vocabulary must exist
	p := filepath.Join(t.TempDir(), "qwen2-"+typ+".gguf")
	out, _, err := run(t, false, "synth", "-o", p, "--preset", "qwen2-tiny", "--type", typ, "--ctx", "96")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+p+": qwen2, 2 layers, d_model 64, 4 heads (2 KV)") {
		t.Errorf("synth printed %q", out)
	}
	return p
}

func TestInspectQwen2(t *testing.T) {
	p := synthQwen2(t, "F32")
	doc := runJSON[inspectJSON](t, "inspect", "--json", p)
	nodes := hookNodes(doc)
	if doc.Arch != "qwen2" || doc.Vocab != 50257 || doc.Tied || doc.Tokenizer != "gpt2" || doc.Norm != "RMSNorm" ||
		doc.RunnableProblem != "" || doc.Layers != 2 || doc.KVHeads != 2 || doc.ContextTrain != 96 || doc.Residual != "sequential" ||
		len(doc.Hooks) != 8 || nodes["attn_out.L"] != "unnamed (op MUL_MAT, reading blk.L.attn_output.weight)" ||
		nodes["resid_mid.L"] != "ffn_inp-L" {
		t.Errorf("inspect: %+v", doc)
	}
}

// TestCaptureQwen2 captures every hook of a qwen2 model and checks the
// residual identities, exact in float32: resid_mid = resid_pre + attn_out
// (attn_out being the unnamed W_O product) and resid_post = resid_mid +
// mlp_out.
func TestCaptureQwen2(t *testing.T) {
	model := synthQwen2(t, "Q8_0")
	dir := filepath.Join(t.TempDir(), "acts")
	if _, _, err := run(t, false, "capture", "-m", model, "--hooks", "resid_pre,z,attn_out,resid_mid,mlp_out,resid_post,ln_final,logits",
		"-o", dir, "The quick brown fox jumps over the lazy dog"); err != nil {
		t.Fatal(err)
	}
	for l := range 2 {
		b := fmt.Sprintf("blocks.%d", l)
		shape, pre := readNpy(t, dir, b+".hook_resid_pre")
		_, attn := readNpy(t, dir, b+".hook_attn_out")
		_, mid := readNpy(t, dir, b+".hook_resid_mid")
		_, mlp := readNpy(t, dir, b+".hook_mlp_out")
		_, post := readNpy(t, dir, b+".hook_resid_post")
		if shape[0] != 9 || shape[1] != 64 {
			t.Fatalf("resid_pre.%d has shape %v, want [9 64] (9 GPT-2 tokens, no BOS)", l, shape)
		}
		for i := range post {
			if mid[i] != pre[i]+attn[i] {
				t.Fatalf("layer %d: resid_mid[%d] = %g, resid_pre + attn_out = %g", l, i, mid[i], pre[i]+attn[i])
			}
			if post[i] != mid[i]+mlp[i] {
				t.Fatalf("layer %d: resid_post[%d] = %g, resid_mid + mlp_out = %g", l, i, post[i], mid[i]+mlp[i])
			}
		}
		if diff.Norm(attn[:64]) == 0 || diff.Norm(mlp[:64]) == 0 {
			t.Errorf("layer %d: attn_out or mlp_out is zero", l)
		}
	}
}

// TestCompareQwen2 runs compare with its default kinds on a qwen2 model:
// every kind at both layers is ranked, and the logit lens of the last
// layer's resid_post is the model's own prediction (through the final
// RMSNorm).
func TestCompareQwen2(t *testing.T) {
	model := synthQwen2(t, "F16")
	doc := runJSON[CompareJSON](t, "compare", "--json", "-m", model, "--answer", " she", "The girl said that", "The boy said that")
	var kinds []string
	for _, c := range doc.Components {
		if !slices.Contains(kinds, c.Kind) {
			kinds = append(kinds, c.Kind)
		}
	}
	slices.Sort(kinds)
	want := []string{"attn_out", "mlp_out", "resid_mid", "resid_post"}
	if !slices.Equal(kinds, want) || len(doc.Components) != 2*len(want) {
		t.Errorf("ranked kinds %v (%d components), want %v at 2 layers", kinds, len(doc.Components), want)
	}
	last := doc.Lens[len(doc.Lens)-1]
	if len(doc.Lens) != 2 || last.A[0].ID != doc.Prompts[0].Top[0].ID || last.B[0].ID != doc.Prompts[1].Top[0].ID {
		t.Errorf("lens of the last layer: A %v, B %v; the model predicts %v and %v",
			last.A[0], last.B[0], doc.Prompts[0].Top[0], doc.Prompts[1].Top[0])
	}
	text, _, err := run(t, false, "compare", "-m", model, "The girl said that", "The boy said that")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "warning:") || !strings.Contains(text, "attn_out") {
		t.Errorf("compare output:\n%s", text)
	}
}

// TestAnalysesQwen2 runs patch (its --exact fixed points), contrast and
// steer on a qwen2 model (compare is TestCompareQwen2).
func TestAnalysesQwen2(t *testing.T) {
	model := synthQwen2(t, "F16")
	checkPatch(t, model, true)
	checkContrastSteer(t, model, "qwen2", 3, 2)
}
