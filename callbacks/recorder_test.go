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
