package cli

import (
	"slices"
	"strings"
	"testing"
)

// The tests in this file run the commands on the phi3-tiny preset: 2
// layers, d_model 64 in 4 heads, d_ff 128, untied, with Llama 2's
// vocabulary standing in for Phi-3's (which adds 64 tokens to it).

func TestInspectPhi3(t *testing.T) {
	p := synthPreset(t, "phi3-tiny", "F32", "phi3")
	doc := runJSON[inspectJSON](t, "inspect", "--json", p)
	nodes := hookNodes(doc)
	if doc.Arch != "phi3" || doc.Vocab != 32000 || doc.Tied || doc.Tokenizer != "llama" || doc.Norm != "RMSNorm" ||
		doc.RunnableProblem != "" || doc.Layers != 2 || doc.ContextTrain != 96 ||
		len(doc.Hooks) != 8 || nodes["attn_out.L"] != "unnamed (op MUL_MAT, reading blk.L.attn_output.weight)" ||
		nodes["resid_mid.L"] != "unnamed (op ADD, reading the MUL_MAT that reads blk.L.attn_output.weight, or GET_ROWS of it)" ||
		nodes["mlp_out.L"] != "ffn_out-L" {
		t.Errorf("inspect: %+v", doc)
	}
	if slices.ContainsFunc(doc.Notes, func(n string) bool { return strings.Contains(n, "no resid_mid") }) {
		t.Errorf("phi3 notes say there is no resid_mid: %q", doc.Notes)
	}
}

func TestCapturePhi3(t *testing.T) {
	checkCaptureResiduals(t, synthPreset(t, "phi3-tiny", "Q8_0", "phi3"), 64, true)
}

func TestAnalysesPhi3(t *testing.T) {
	model := synthPreset(t, "phi3-tiny", "F16", "phi3")
	checkCompare(t, model, true, 2)
	checkPatch(t, model, true)
	checkContrastSteer(t, model, "phi3", 3, 2)
}
