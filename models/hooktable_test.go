package models

import (
	"strings"
	"testing"
)

// TestHookTables pins the llama.cpp graph node of every hook of every
// architecture, as the graph builders of the vendored llama.cpp name them
// (src/models/llama.cpp, gpt2.cpp, gptneox.cpp, qwen2.cpp, qwen3.cpp, phi3.cpp, gemma2-iswa.cpp, and build_attn
// and build_ffn in llama-graph.cpp). The agreement tests in llamacpp check that
// these nodes hold what the names say.
func TestHookTables(t *testing.T) {
	neoxSeq, err := HookTableOf(&Info{Arch: "gptneox", ParallelResidual: false})
	if err != nil {
		t.Fatal(err)
	}
	neoxPar, err := HookTableOf(&Info{Arch: "gptneox", ParallelResidual: true})
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]*HookTable{"gptneox-seq": neoxSeq, "gptneox": neoxPar}
	for _, a := range []string{"llama", "gpt2", "qwen2", "qwen3", "phi3", "gemma2"} {
		if tables[a], err = HookTableFor(a); err != nil {
			t.Fatal(err)
		}
	}
	// want: kind → layer 0, layer 3 (or the model-level node); "" where the
	// architecture has no such hook.
	want := map[string]map[Kind][2]string{
		"llama": {
			ResidPre:  {"inp_embd", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"attn_out-0", "attn_out-3"},
			ResidMid:  {"ffn_inp-0", "ffn_inp-3"},
			MLPOut:    {"ffn_out-0 (not reading ffn_inp-0)", "ffn_out-3 (not reading ffn_inp-3)"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"gpt2": {
			ResidPre:  {"inpL", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"unnamed (op ADD, reading blk.0.attn_output.bias)", "unnamed (op ADD, reading blk.3.attn_output.bias)"},
			ResidMid:  {"ffn_inp-0", "ffn_inp-3"},
			MLPOut:    {"ffn_out-0", "ffn_out-3"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"gptneox": {
			ResidPre:  {"inp_embd", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"unnamed (op ADD, reading blk.0.attn_output.bias)", "unnamed (op ADD, reading blk.3.attn_output.bias)"},
			ResidMid:  {"", ""},
			MLPOut:    {"ffn_out-0 (not reading ffn_out-0)", "ffn_out-3 (not reading ffn_out-3)"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"qwen2": {
			ResidPre:  {"inp_embd", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"unnamed (op MUL_MAT, reading blk.0.attn_output.weight)", "unnamed (op MUL_MAT, reading blk.3.attn_output.weight)"},
			ResidMid:  {"ffn_inp-0", "ffn_inp-3"},
			MLPOut:    {"ffn_out-0 (not reading ffn_inp-0)", "ffn_out-3 (not reading ffn_inp-3)"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"qwen3": {
			ResidPre:  {"inp_embd", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"unnamed (op MUL_MAT, reading blk.0.attn_output.weight)", "unnamed (op MUL_MAT, reading blk.3.attn_output.weight)"},
			ResidMid:  {"ffn_inp-0", "ffn_inp-3"},
			MLPOut:    {"ffn_out-0 (not reading ffn_inp-0)", "ffn_out-3 (not reading ffn_inp-3)"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"phi3": {
			ResidPre: {"inp_embd", "l_out-2"},
			Z:        {"kqv_out-0", "kqv_out-3"},
			AttnOut:  {"unnamed (op MUL_MAT, reading blk.0.attn_output.weight)", "unnamed (op MUL_MAT, reading blk.3.attn_output.weight)"},
			ResidMid: {"unnamed (op ADD, reading the MUL_MAT that reads blk.0.attn_output.weight, or GET_ROWS of it)",
				"unnamed (op ADD, reading the MUL_MAT that reads blk.3.attn_output.weight, or GET_ROWS of it)"},
			MLPOut:    {"ffn_out-0", "ffn_out-3"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"gemma2": {
			ResidPre:  {"inp_scaled", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"attn_post_norm-0", "attn_post_norm-3"},
			ResidMid:  {"sa_out-0", "sa_out-3"},
			MLPOut:    {"ffn_post_norm (op MUL, reading blk.0.post_ffw_norm.weight)", "ffn_post_norm (op MUL, reading blk.3.post_ffw_norm.weight)"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
		"gptneox-seq": {
			ResidPre:  {"inp_embd", "l_out-2"},
			Z:         {"kqv_out-0", "kqv_out-3"},
			AttnOut:   {"unnamed (op ADD, reading blk.0.attn_output.bias)", "unnamed (op ADD, reading blk.3.attn_output.bias)"},
			ResidMid:  {"ffn_inp-0", "ffn_inp-3"},
			MLPOut:    {"ffn_out-0", "ffn_out-3"},
			ResidPost: {"l_out-0", "l_out-3"},
			LnFinal:   {"result_norm"},
			Logits:    {"result_output"},
		},
	}
	for name, tab := range tables {
		t.Run(name, func(t *testing.T) {
			for _, k := range append(append([]Kind{}, LayerKinds...), ModelKinds...) {
				w := want[name][k]
				layers := []int{0, 3}
				if !k.PerLayer() {
					layers = []int{-1}
				}
				for i, l := range layers {
					n, ok := tab.Node(Hook{Kind: k, Layer: l})
					got := ""
					if ok {
						got = n.String()
					}
					if got != w[i] {
						t.Errorf("%s at layer %d: node %q, want %q", k, l, got, w[i])
					}
					if ok != tab.Has(k) || (ok && tab.Check(k) != nil) {
						t.Errorf("%s: Node reports %v, Has %v, Check %v", k, ok, tab.Has(k), tab.Check(k))
					}
				}
			}
		})
	}
	// The gptneox tables are the same architecture: the variant is in the
	// errors and in inspect, not in the name.
	if neoxPar.Arch != "gptneox" || neoxSeq.Arch != "gptneox" || neoxPar.Variant == neoxSeq.Variant {
		t.Errorf("gptneox tables: %q/%q and %q/%q", neoxPar.Arch, neoxPar.Variant, neoxSeq.Arch, neoxSeq.Variant)
	}
	if d, _ := HookTableFor("gptneox"); d != neoxPar {
		t.Error("HookTableFor(gptneox) is not the parallel-residual table (every released GPT-NeoX model uses it)")
	}
}

func TestHookTableMissing(t *testing.T) {
	tab, err := HookTableOf(&Info{Arch: "gptneox", ParallelResidual: true})
	if err != nil {
		t.Fatal(err)
	}
	err = tab.Check(ResidMid)
	if err == nil || !containsAll(err.Error(), "gptneox (parallel residual)", "no resid_mid", "in parallel", "resid_pre + attn_out + mlp_out") {
		t.Errorf("Check(resid_mid) = %v", err)
	}
	found := false
	for _, n := range tab.Notes {
		found = found || strings.HasPrefix(n, "no resid_mid:")
	}
	if !found {
		t.Errorf("the notes do not say why there is no resid_mid: %q", tab.Notes)
	}
	if tab.Pattern(ResidMid) != "" {
		t.Errorf("Pattern(resid_mid) = %q", tab.Pattern(ResidMid))
	}
	if _, err := HookTableFor("bert"); err == nil || !strings.Contains(err.Error(), "supported: gemma2, gemma3, gpt2, gptneox, llama, phi3, qwen2, qwen3") {
		t.Errorf("HookTableFor(bert) = %v", err)
	}
}

func TestHookTablePattern(t *testing.T) {
	for _, tc := range []struct {
		arch string
		kind Kind
		want string
	}{
		{"llama", ResidPre, "inp_embd (L=0), l_out-(L-1)"},
		{"gpt2", ResidPre, "inpL (L=0), l_out-(L-1)"},
		{"llama", MLPOut, "ffn_out-L (not reading ffn_inp-L)"},
		{"gptneox", MLPOut, "ffn_out-L (not reading ffn_out-L)"},
		{"gpt2", AttnOut, "unnamed (op ADD, reading blk.L.attn_output.bias)"},
		{"gpt2", LnFinal, "result_norm"},
		{"llama", ResidPost, "l_out-L"},
		{"qwen2", AttnOut, "unnamed (op MUL_MAT, reading blk.L.attn_output.weight)"},
	} {
		tab, err := HookTableFor(tc.arch)
		if err != nil {
			t.Fatal(err)
		}
		if got := tab.Pattern(tc.kind); got != tc.want {
			t.Errorf("%s %s: Pattern = %q, want %q", tc.arch, tc.kind, got, tc.want)
		}
	}
}
