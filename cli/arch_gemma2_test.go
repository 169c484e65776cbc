package cli

import (
	"slices"
	"strings"
	"testing"
)

// The tests in this file run the commands on the gemma2-tiny preset: 2
// layers, d_model 64 in 4 heads of 32 (2 kv heads), d_ff 128, sliding
// window 8 in layer 0, soft-caps 50 and 30, tied, with Llama 2's
// vocabulary standing in for Gemma's.

func TestInspectGemma2(t *testing.T) {
	p := synthPreset(t, "gemma2-tiny", "F32", "gemma2")
	doc := runJSON[inspectJSON](t, "inspect", "--json", p)
	nodes := hookNodes(doc)
	if doc.Arch != "gemma2" || doc.Vocab != 32000 || !doc.Tied || doc.Tokenizer != "llama" || doc.Norm != "RMSNorm" ||
		doc.RunnableProblem != "" || doc.Layers != 2 || doc.KVHeads != 2 || len(doc.Hooks) != 8 ||
		nodes["resid_pre.L"] != "inp_scaled (L=0), l_out-(L-1)" || nodes["attn_out.L"] != "attn_post_norm-L" ||
		nodes["resid_mid.L"] != "sa_out-L" || nodes["mlp_out.L"] != "ffn_post_norm (op MUL, reading blk.L.post_ffw_norm.weight)" {
		t.Errorf("inspect: %+v", doc)
	}
	if !slices.ContainsFunc(doc.Notes, func(n string) bool { return strings.Contains(n, "soft-capped") }) {
		t.Errorf("gemma2 notes do not mention soft-capping: %q", doc.Notes)
	}
}

func TestCaptureGemma2(t *testing.T) {
	checkCaptureResiduals(t, synthPreset(t, "gemma2-tiny", "Q8_0", "gemma2"), 64, true)
}

func TestAnalysesGemma2(t *testing.T) {
	model := synthPreset(t, "gemma2-tiny", "F16", "gemma2")
	checkCompare(t, model, true, 2)
	checkPatch(t, model, true)
	checkContrastSteer(t, model, "gemma2", 3, 2)
}
