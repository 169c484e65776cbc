package callbacks

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

func TestNameSplit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		base  string
		layer int
	}{
		{"l_out-3", "l_out", 3},
		{"ffn_out-31", "ffn_out", 31},
		{"result_norm", "result_norm", -1},
		{"inp_embd", "inp_embd", -1},
		{"a-", "a-", -1},
		{"-3", "-3", -1},               // no base
		{"x-1234567", "x-1234567", -1}, // not a layer number
		{"cache_k_l0 (view)", "cache_k_l0 (view)", -1},
	} {
		b, l := splitName(tc.name)
		if b != tc.base || l != tc.layer {
			t.Errorf("%q: (%q, %d), want (%q, %d)", tc.name, b, l, tc.base, tc.layer)
		}
	}
}

func TestSelectErrors(t *testing.T) {
	r := New()
	defer r.Close()
	if err := r.Select([]models.Node{{Name: "l_out", Layer: 0, Op: "NOT_AN_OP"}}); err == nil || !strings.Contains(err.Error(), "NOT_AN_OP") {
		t.Errorf("unknown op: %v", err)
	}
	if err := r.Select([]models.Node{{Name: strings.Repeat("x", 80), Layer: 0}}); err == nil {
		t.Error("long name accepted")
	}
	if err := r.Select([]models.Node{{Name: "l_out", Layer: 2, Op: "ADD"}, {Name: "result_norm", Layer: -1}}); err != nil {
		t.Fatal(err)
	}
	if r.Node(1).Name != "result_norm" {
		t.Errorf("slot 1 holds %v", r.Node(1))
	}
	if err := r.Reserve(0, 1000); err != nil {
		t.Fatal(err)
	}
	if w, d := r.Rows(0); w != 0 || d != nil {
		t.Errorf("fresh slot has rows: %d %v", w, len(d))
	}
	r.Close()
	r.Close()
	if err := r.Select(nil); err == nil {
		t.Error("select after close")
	}
}

// TestMatch checks how the recorder tells apart nodes that share a name,
// or have none, for the hook tables of every architecture: a llama MLP
// output from the residual add llama.cpp also names ffn_out-L when a
// control vector is loaded, a GPT-NeoX MLP output from the add of the layer
// input llama.cpp names ffn_out-L too (it reads the first), and the unnamed
// attention output of gpt2 and gptneox by the bias it adds.
func TestMatch(t *testing.T) {
	r := New()
	defer r.Close()
	nodes := []models.Node{
		{Name: "ffn_out", Layer: 3, NotSrc: "ffn_inp-3"},                  // llama mlp_out.3
		{Name: "ffn_out", Layer: 4, NotSrc: "ffn_out-4"},                  // gptneox mlp_out.4
		{Layer: -1, Op: "ADD", Src: "blk.2.attn_output.bias"},             // attn_out.2
		{Layer: -1, Op: "ADD", Src: "blk.12.attn_output.bias"},            // attn_out.12
		{Name: "inpL", Layer: -1},                                         // gpt2 resid_pre.0
		{Name: "l_out", Layer: 4},                                         // resid_post.4
		{Name: "ffn_inp", Layer: 12, Op: "ADD", NotSrc: "something-else"}, // a plain named node
	}
	if err := r.Select(nodes); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, op string
		srcs     []string
		want     int
	}{
		{"ffn_out-3", "ADD", []string{"ffn_down-3", "blk.3.ffn_down.bias"}, 0},
		{"ffn_out-3", "MUL_MAT", []string{"blk.3.ffn_down.weight", "ffn_swiglu-3"}, 0},
		{"ffn_out-3", "ADD", []string{"ffn_out-3", "ffn_inp-3"}, -1}, // the residual add
		{"ffn_out-4", "ADD", []string{"ffn_down-4", "blk.4.ffn_down.bias"}, 1},
		{"ffn_out-4", "ADD", []string{"ffn_out-4", "l_out-3"}, -1}, // MLP output + layer input
		{"ffn_out-4", "ADD", []string{"ffn_out-4", "inp_embd"}, -1},
		{"", "ADD", []string{"", "blk.2.attn_output.bias"}, 2},
		{"node_38", "ADD", []string{"node_37", "blk.2.attn_output.bias"}, 2}, // what ggml calls it
		{"node_", "ADD", []string{"node_37", "blk.2.attn_output.bias"}, -1},
		{"node_3x", "ADD", []string{"node_37", "blk.2.attn_output.bias"}, -1},
		{"leaf_3", "ADD", []string{"node_37", "blk.2.attn_output.bias"}, -1},
		{"node_1234", "ADD", []string{"", "blk.12.attn_output.bias"}, 3},
		{"", "ADD", []string{"", "blk.1.attn_output.bias"}, -1},
		{"", "MUL", []string{"", "blk.2.attn_output.bias"}, -1}, // wrong op
		{"", "ADD", []string{"ffn_inp-2", "x"}, -1},             // another unnamed add
		{"something", "ADD", []string{"", "blk.2.attn_output.bias"}, -1},
		{"inpL", "ADD", []string{"inp_embd", "pos_embd"}, 4},
		{"inp_embd", "GET_ROWS", nil, -1},
		{"l_out-4", "ADD", nil, 5},
		{"l_out-3", "ADD", nil, -1},
		{"ffn_inp-12", "ADD", []string{"a", "b"}, 6},
		{"ffn_inp-12", "ADD", []string{"something-else"}, -1},
	} {
		if got := r.matchFake(tc.name, tc.op, tc.srcs...); got != tc.want {
			t.Errorf("node %q (%s, reading %q) matches slot %d, want %d", tc.name, tc.op, tc.srcs, got, tc.want)
		}
	}
	if err := r.Select([]models.Node{{Layer: -1, Op: "ADD"}}); err == nil || !strings.Contains(err.Error(), "unnamed") {
		t.Errorf("an unnamed node without a source: %v", err)
	}
}
