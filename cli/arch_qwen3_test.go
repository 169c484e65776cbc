package cli

import "testing"

// The tests in this file run the commands on the qwen3-tiny preset: 2
// layers, d_model 64 in 4 heads of 32 (2 kv heads), tied, with GPT-2's
// vocabulary standing in for Qwen's.

func TestInspectQwen3(t *testing.T) {
	p := synthPreset(t, "qwen3-tiny", "F32", "qwen3")
	doc := runJSON[inspectJSON](t, "inspect", "--json", p)
	nodes := hookNodes(doc)
	if doc.Arch != "qwen3" || doc.Vocab != 50257 || !doc.Tied || doc.Tokenizer != "gpt2" || doc.Norm != "RMSNorm" ||
		doc.RunnableProblem != "" || doc.Layers != 2 || doc.KVHeads != 2 || doc.ContextTrain != 96 || doc.Residual != "sequential" ||
		len(doc.Hooks) != 8 || nodes["attn_out.L"] != "unnamed (op MUL_MAT, reading blk.L.attn_output.weight)" ||
		nodes["resid_mid.L"] != "ffn_inp-L" || nodes["mlp_out.L"] != "ffn_out-L (not reading ffn_inp-L)" {
		t.Errorf("inspect: %+v", doc)
	}
}

func TestCaptureQwen3(t *testing.T) {
	checkCaptureResiduals(t, synthPreset(t, "qwen3-tiny", "Q8_0", "qwen3"), 64, true)
}

func TestAnalysesQwen3(t *testing.T) {
	model := synthPreset(t, "qwen3-tiny", "F16", "qwen3")
	checkCompare(t, model, true, 2)
	checkPatch(t, model, true)
	checkContrastSteer(t, model, "qwen3", 3, 2)
}
