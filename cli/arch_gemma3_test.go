package cli

import "testing"

// The tests in this file run the commands on the gemma3-tiny preset: 6
// layers (five with a sliding window of 8, one global), d_model 64 in 4
// heads of 32 (2 kv heads), per-head q/k norms, no soft-caps, tied, with
// Llama 2's vocabulary standing in for Gemma's. (Fewer than 6 layers would
// leave no global layer, on which llama.cpp aborts: the validator refuses
// such a file.)

func TestInspectGemma3(t *testing.T) {
	p := synthPreset(t, "gemma3-tiny", "F32", "gemma3")
	doc := runJSON[inspectJSON](t, "inspect", "--json", p)
	nodes := hookNodes(doc)
	if doc.Arch != "gemma3" || !doc.Tied || doc.Layers != 6 || doc.RunnableProblem != "" || len(doc.Hooks) != 8 ||
		nodes["resid_pre.L"] != "inp_scaled (L=0), l_out-(L-1)" || nodes["attn_out.L"] != "attn_post_norm-L" ||
		nodes["resid_mid.L"] != "sa_out-L" || nodes["mlp_out.L"] != "ffn_post_norm-L" {
		t.Errorf("inspect: %+v", doc)
	}
}

func TestCaptureGemma3(t *testing.T) {
	checkCaptureResiduals(t, synthPreset(t, "gemma3-tiny", "Q8_0", "gemma3"), 64, true)
}

func TestAnalysesGemma3(t *testing.T) {
	model := synthPreset(t, "gemma3-tiny", "F16", "gemma3")
	checkCompare(t, model, true, 6)
	checkPatch(t, model, true)
	checkContrastSteer(t, model, "gemma3", 3, 6)
}
