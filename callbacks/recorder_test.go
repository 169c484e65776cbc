package callbacks

import (
	"fmt"
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

// TestMatchVia checks how the recorder finds a node by a source of its
// source (models.Node.Via), as for phi3's resid_mid: the unnamed ADD of the
// W_O product (the MUL_MAT that reads blk.L.attn_output.weight) and the
// layer input, and in the last layer of GET_ROWS row selections of both.
// An ADD whose source's source is another weight, another layer's W_O, or
// that reads the W_O product only two steps away (the add of mlp_out to
// resid_mid, unnamed when a control vector is loaded) does not match.
func TestMatchVia(t *testing.T) {
	r := New()
	defer r.Close()
	nodes := []models.Node{
		{Layer: -1, Op: "ADD", ViaOp: "MUL_MAT", Via: "blk.0.attn_output.weight"}, // phi3 resid_mid.0
		{Layer: -1, Op: "ADD", ViaOp: "MUL_MAT", Via: "blk.1.attn_output.weight"}, // phi3 resid_mid.1 (last)
		{Layer: -1, Op: "MUL", Via: "blk.5.x.weight"},                             // any op reads it
	}
	if err := r.Select(nodes); err != nil {
		t.Fatal(err)
	}
	leaf := func(name string) fakeNode { return fakeNode{name: name} }
	wo := func(l int) fakeNode {
		return fakeNode{name: "node_20", op: "MUL_MAT", srcs: []fakeNode{leaf(fmt.Sprintf("blk.%d.attn_output.weight", l)), {name: "kqv_out-0", op: "CPY"}}}
	}
	rows := func(n fakeNode) fakeNode {
		return fakeNode{name: "node_30", op: "GET_ROWS", srcs: []fakeNode{n, leaf("inp_out_ids")}}
	}
	residMid0 := fakeNode{name: "node_21", op: "ADD", srcs: []fakeNode{wo(0), leaf("inp_embd")}}
	for _, tc := range []struct {
		what string
		n    fakeNode
		want int
	}{
		{"resid_mid.0", residMid0, 0},
		{"resid_mid.0, sources swapped", fakeNode{name: "", op: "ADD", srcs: []fakeNode{leaf("inp_embd"), wo(0)}}, 0},
		{"resid_mid.1 of row selections", fakeNode{name: "node_32", op: "ADD", srcs: []fakeNode{rows(wo(1)), rows(leaf("l_out-0"))}}, 1},
		{"resid_mid.1 without row selection", fakeNode{name: "node_32", op: "ADD", srcs: []fakeNode{wo(1), leaf("l_out-0")}}, 1},
		{"named l_out", fakeNode{name: "l_out-0", op: "ADD", srcs: []fakeNode{wo(0), leaf("ffn_out-0")}}, -1},
		{"another weight", fakeNode{name: "node_21", op: "ADD", srcs: []fakeNode{
			{name: "node_20", op: "MUL_MAT", srcs: []fakeNode{leaf("blk.0.ffn_down.weight"), leaf("x")}}, leaf("inp_embd")}}, -1},
		{"another layer's W_O", fakeNode{name: "node_21", op: "ADD", srcs: []fakeNode{wo(2), leaf("inp_embd")}}, -1},
		{"the weight itself is a direct source", fakeNode{name: "node_21", op: "ADD", srcs: []fakeNode{leaf("blk.0.attn_output.weight")}}, -1},
		{"read by another op", fakeNode{name: "node_21", op: "ADD", srcs: []fakeNode{
			{name: "node_20", op: "MUL", srcs: []fakeNode{leaf("blk.0.attn_output.weight")}}}}, -1},
		{"two steps away (control vector: resid_mid + mlp_out)", fakeNode{name: "node_40", op: "ADD", srcs: []fakeNode{residMid0, leaf("ffn_out-0")}}, -1},
		{"two row selections", fakeNode{name: "node_32", op: "ADD", srcs: []fakeNode{rows(rows(wo(1)))}}, -1},
		{"rows of the indices, not the data", fakeNode{name: "node_32", op: "ADD", srcs: []fakeNode{
			{name: "node_30", op: "GET_ROWS", srcs: []fakeNode{leaf("x"), wo(1)}}}}, -1},
		{"the row selection itself", rows(wo(1)), -1},
		{"wrong op", fakeNode{name: "node_21", op: "MUL", srcs: residMid0.srcs}, -1},
		{"any op reading via", fakeNode{op: "MUL", srcs: []fakeNode{{op: "ADD", srcs: []fakeNode{leaf("blk.5.x.weight")}}}}, 2},
		{"no sources", fakeNode{name: "node_21", op: "ADD"}, -1},
	} {
		if got := r.matchNode(tc.n); got != tc.want {
			t.Errorf("%s: matches slot %d, want %d", tc.what, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n    models.Node
		want string
	}{
		{models.Node{Name: "x", Layer: -1, ViaOp: "MUL_MAT"}, "without the tensor"},
		{models.Node{Layer: -1, Via: "w", ViaOp: "NOT_AN_OP"}, "NOT_AN_OP"},
		{models.Node{Layer: -1, Via: strings.Repeat("w", 80)}, "too long"},
	} {
		if err := r.Select([]models.Node{tc.n}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Select(%v): %v, want an error saying %q", tc.n, err, tc.want)
		}
	}
}
