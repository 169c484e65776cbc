package models

import (
	"fmt"
	"strings"
)

// Node identifies a node of llama.cpp's compute graph. llama.cpp names nodes
// "name-L" for layer L and "name" for nodes outside the layers.
type Node struct {
	Name  string // base name without the "-L" suffix
	Layer int    // -1 for nodes without a layer suffix
	// Op, when set, is the ggml op name the node must have ("MUL_MAT", "ADD").
	Op string
	// NotSrc, when set, is the base name of a same-layer node that must not be
	// a direct source of this node. It tells apart nodes that share a name:
	// llama.cpp names both the MLP output and, when a control vector is
	// loaded, the residual add after it "ffn_out-L"; only the residual add
	// reads "ffn_inp-L".
	NotSrc string
}

func (n Node) String() string {
	s := n.Name
	if n.Layer >= 0 {
		s = fmt.Sprintf("%s-%d", n.Name, n.Layer)
	}
	var q []string
	if n.Op != "" {
		q = append(q, "op "+n.Op)
	}
	if n.NotSrc != "" {
		q = append(q, "not reading "+n.NotSrc)
	}
	if len(q) > 0 {
		s += " (" + strings.Join(q, ", ") + ")"
	}
	return s
}

// HookTable maps hooks to graph nodes for one architecture.
type HookTable struct {
	Arch string
	// Kinds are the hook kinds this architecture has.
	Kinds []Kind
	// Notes explain kinds that are missing or mean something particular.
	Notes []string
	node  func(h Hook) Node
}

// Node returns the graph node that holds h. It reports false when the
// architecture has no such hook.
func (t *HookTable) Node(h Hook) (Node, bool) {
	if !t.Has(h.Kind) {
		return Node{}, false
	}
	return t.node(h), true
}

// Has reports whether the architecture has hooks of kind k.
func (t *HookTable) Has(k Kind) bool {
	for _, x := range t.Kinds {
		if x == k {
			return true
		}
	}
	return false
}

var hookTables = map[string]*HookTable{
	"llama": {
		Arch:  "llama",
		Kinds: []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
		Notes: []string{
			"ln_final.hook_normalized includes the final RMSNorm weight (llama.cpp does not fold it into the unembedding)",
			"resid_post includes a loaded control vector; mlp_out never does",
		},
		node: func(h Hook) Node {
			switch h.Kind {
			case ResidPre:
				if h.Layer == 0 {
					return Node{Name: "inp_embd", Layer: -1}
				}
				return Node{Name: "l_out", Layer: h.Layer - 1}
			case Z:
				return Node{Name: "kqv_out", Layer: h.Layer}
			case AttnOut:
				return Node{Name: "attn_out", Layer: h.Layer}
			case ResidMid:
				return Node{Name: "ffn_inp", Layer: h.Layer}
			case MLPOut:
				return Node{Name: "ffn_out", Layer: h.Layer, NotSrc: "ffn_inp"}
			case ResidPost:
				return Node{Name: "l_out", Layer: h.Layer}
			case LnFinal:
				return Node{Name: "result_norm", Layer: -1}
			case Logits:
				return Node{Name: "result_output", Layer: -1}
			}
			panic("models: no node for " + string(h.Kind))
		},
	},
}

// HookTableFor returns the hook table of an architecture
// (general.architecture), or an error listing the supported ones.
func HookTableFor(arch string) (*HookTable, error) {
	t, ok := hookTables[arch]
	if !ok {
		var names []string
		for n := range hookTables {
			names = append(names, n)
		}
		return nil, fmt.Errorf("architecture %q has no hook table in lldiff (supported: %s)", arch, strings.Join(names, ", "))
	}
	return t, nil
}
