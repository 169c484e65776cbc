package models

import (
	"fmt"
	"sort"
	"strings"
)

// Node identifies a node of llama.cpp's compute graph. llama.cpp names nodes
// "name-L" for layer L and "name" for nodes outside the layers; some nodes it
// leaves unnamed, and those are told apart by what they read (Src).
type Node struct {
	// Name is the base name without the "-L" suffix; "" for a node that
	// llama.cpp leaves unnamed (ggml calls it "node_N" after its index in
	// the graph, which changes with the graph), which Src must identify.
	Name  string
	Layer int // -1 for nodes without a layer suffix (and unnamed nodes)
	// Op, when set, is the ggml op name the node must have ("MUL_MAT", "ADD").
	Op string
	// Src, when set, is the full name of a tensor that must be a direct
	// source of the node, such as the weight "blk.3.attn_output.bias": it
	// finds the attention output of gpt2 and gptneox, which llama.cpp adds to
	// its bias without naming the result.
	Src string
	// NotSrc, when set, is the full name of a node that must not be a
	// direct source of this node. It tells apart nodes that share a name:
	// llama.cpp names both the MLP output and, when a control vector is
	// loaded, the residual add after it "ffn_out-L", and only the residual
	// add reads "ffn_inp-L" (llama); GPT-NeoX names the MLP output and the
	// add of the layer input to it "ffn_out-L", and only the add reads the
	// first "ffn_out-L".
	NotSrc string
	// Via, when set, is the full name of a tensor that a direct source of
	// the node must itself read directly: the node is found by a source of
	// its source. That source may also be reached through one GET_ROWS row
	// selection (the source is then the GET_ROWS, and the node it selects
	// rows of must read Via). ViaOp, when set, is the op of the node that
	// reads Via ("MUL_MAT"). It finds phi3's resid_mid, resid_pre + attn_out,
	// which llama.cpp leaves unnamed and whose sources are unnamed too: it
	// adds the W_O product (the MUL_MAT that reads blk.L.attn_output.weight)
	// to the layer input, and in the last layer the rows of both that
	// llama.cpp keeps for output (ggml_get_rows with inp_out_ids), so no
	// direct source has a name to match.
	Via   string
	ViaOp string
}

// FullName returns the name llama.cpp gives the node: "l_out-3",
// "result_norm", or "" for an unnamed node.
func (n Node) FullName() string {
	if n.Name != "" && n.Layer >= 0 {
		return fmt.Sprintf("%s-%d", n.Name, n.Layer)
	}
	return n.Name
}

func (n Node) String() string {
	s := n.FullName()
	if s == "" {
		s = "unnamed"
	}
	var q []string
	if n.Op != "" {
		q = append(q, "op "+n.Op)
	}
	if n.Src != "" {
		q = append(q, "reading "+n.Src)
	}
	if n.NotSrc != "" {
		q = append(q, "not reading "+n.NotSrc)
	}
	if n.Via != "" {
		by := "a node"
		if n.ViaOp != "" {
			by = "the " + n.ViaOp
		}
		q = append(q, "reading "+by+" that reads "+n.Via+", or GET_ROWS of it")
	}
	if len(q) > 0 {
		s += " (" + strings.Join(q, ", ") + ")"
	}
	return s
}

// HookTable maps hooks to graph nodes for one architecture.
type HookTable struct {
	Arch string
	// Variant, when not empty, says which form of the architecture the
	// table is for ("parallel residual").
	Variant string
	// Kinds are the hook kinds this architecture has.
	Kinds []Kind
	// Missing says, for each kind the architecture lacks, why.
	Missing map[Kind]string
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

// Check returns nil when the architecture has hooks of kind k, and
// otherwise an error that says why it has none.
func (t *HookTable) Check(k Kind) error {
	if t.Has(k) {
		return nil
	}
	name := t.Arch
	if t.Variant != "" {
		name += " (" + t.Variant + ")"
	}
	if why := t.Missing[k]; why != "" {
		return fmt.Errorf("the %s architecture has no %s hooks: %s", name, k, why)
	}
	return fmt.Errorf("the %s architecture has no %s hooks", name, k)
}

// patternLayer is the layer Pattern renders a node at before writing the
// layer as L: no model has that many layers, so the number is unambiguous.
const patternLayer = 987654

// Pattern describes the node behind kind k for any layer L, as inspect
// shows it: "ffn_inp-L", "inp_embd (L=0), l_out-(L-1)", "unnamed (op ADD,
// reading blk.L.attn_output.bias)". It returns "" when the architecture has
// no hook of kind k.
func (t *HookTable) Pattern(k Kind) string {
	if !t.Has(k) {
		return ""
	}
	if !k.PerLayer() {
		return t.node(Hook{Kind: k, Layer: -1}).String()
	}
	r := strings.NewReplacer(fmt.Sprint(patternLayer), "L", fmt.Sprint(patternLayer-1), "(L-1)")
	s := r.Replace(t.node(Hook{Kind: k, Layer: patternLayer}).String())
	if k == ResidPre {
		s = t.node(Hook{Kind: k, Layer: 0}).String() + " (L=0), " + s
	}
	return s
}

// Node constructors for the tables.
func named(name string, layer int) Node { return Node{Name: name, Layer: layer} }

// residPre is resid_pre of layer l: embed for layer 0 (a node without a
// layer), the output of layer l-1 after.
func residPre(embed string, l int) Node {
	if l == 0 {
		return named(embed, -1)
	}
	return named("l_out", l-1)
}

// biasAdd is the unnamed node that adds the bias tensor weight+".bias" of
// layer l, such as the attention output after W_O and its bias in gpt2 and
// gptneox.
func biasAdd(tensor string, l int) Node {
	return Node{Layer: -1, Op: "ADD", Src: fmt.Sprintf("blk.%d.%s.bias", l, tensor)}
}

// commonNode returns the node of the hooks that llama.cpp's llama, gpt2
// and gptneox graphs name alike; the tables below give the others
// (resid_pre, attn_out, mlp_out) and fall back on it:
//
//	z           kqv_out-L
//	resid_mid   ffn_inp-L (where the architecture has one)
//	resid_post  l_out-L
//	ln_final    result_norm
//	logits      result_output
func commonNode(h Hook) Node {
	switch h.Kind {
	case Z:
		return named("kqv_out", h.Layer)
	case ResidMid:
		return named("ffn_inp", h.Layer)
	case ResidPost:
		return named("l_out", h.Layer)
	case LnFinal:
		return named("result_norm", -1)
	case Logits:
		return named("result_output", -1)
	}
	panic("models: no node for " + string(h.Kind))
}

var llamaTable = &HookTable{
	Arch:  "llama",
	Kinds: []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
	Notes: []string{
		"ln_final.hook_normalized includes the final RMSNorm weight (llama.cpp does not fold it into the unembedding)",
		"resid_post includes a loaded control vector; mlp_out never does",
	},
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inp_embd", h.Layer)
		case AttnOut:
			return named("attn_out", h.Layer)
		case MLPOut:
			return Node{Name: "ffn_out", Layer: h.Layer, NotSrc: fmt.Sprintf("ffn_inp-%d", h.Layer)}
		}
		return commonNode(h)
	},
}

// layerNormNotes are the notes shared by the gpt2 and gptneox tables.
var layerNormNotes = []string{
	"ln_final.hook_normalized is the final LayerNorm with its weight and bias, (x − mean)/std · γ + β",
	"attn_out is W_O z + b_O; llama.cpp leaves that node unnamed, and lldiff finds it as the ADD that reads blk.L.attn_output.bias",
	"mlp_out is W_out gelu(W_in x + b_in) + b_out, with ggml's GELU: the tanh approximation, evaluated through a half-precision table on the CPU",
	"resid_post includes a loaded control vector; mlp_out never does",
}

var gpt2Table = &HookTable{
	Arch:  "gpt2",
	Kinds: []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
	Notes: append([]string{
		"resid_pre of layer 0 is the token embedding plus the learned position embedding (llama.cpp's inpL; inp_embd is the token embedding alone)",
	}, layerNormNotes...),
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inpL", h.Layer)
		case AttnOut:
			return biasAdd("attn_output", h.Layer)
		case MLPOut:
			return named("ffn_out", h.Layer)
		}
		return commonNode(h)
	},
}

// noResidMid says why a parallel-residual GPT-NeoX has no resid_mid.
const noResidMid = "GPT-NeoX with a parallel residual (Pythia: gptneox.use_parallel_residual = true) runs attention and the MLP in parallel " +
	"on the same layer input, resid_post = resid_pre + attn_out + mlp_out, so there is no residual stream between them"

var gptneoxParallelTable = &HookTable{
	Arch:    "gptneox",
	Variant: "parallel residual",
	Kinds:   []Kind{ResidPre, Z, AttnOut, MLPOut, ResidPost, LnFinal, Logits},
	Missing: map[Kind]string{ResidMid: noResidMid},
	Notes: append([]string{
		"no resid_mid: " + noResidMid,
		"mlp_out reads LayerNorm(resid_pre), not resid_pre + attn_out",
	}, layerNormNotes...),
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inp_embd", h.Layer)
		case AttnOut:
			return biasAdd("attn_output", h.Layer)
		case MLPOut:
			// llama.cpp also names the add of the layer input to the MLP
			// output ffn_out-L; that one reads the MLP output.
			return Node{Name: "ffn_out", Layer: h.Layer, NotSrc: fmt.Sprintf("ffn_out-%d", h.Layer)}
		}
		return commonNode(h)
	},
}

var gptneoxSequentialTable = &HookTable{
	Arch:    "gptneox",
	Variant: "sequential residual",
	Kinds:   []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
	Notes: append([]string{
		"gptneox.use_parallel_residual is false: attention and the MLP run one after the other, as in GPT-2, so resid_mid exists",
	}, layerNormNotes...),
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inp_embd", h.Layer)
		case AttnOut:
			return biasAdd("attn_output", h.Layer)
		case MLPOut:
			return named("ffn_out", h.Layer)
		}
		return commonNode(h)
	},
}

// qwen2Table follows llama.cpp's src/models/qwen2.cpp: the llama graph
// with biases added to Q, K and V before RoPE (NEOX rotation), but the
// output projection is not named attn_out-L: build_attn returns the
// product W_O z unnamed, and the graph adds it to the layer input as
// ffn_inp-L. The add after the MLP is unnamed too, so ffn_out-L is the MLP
// output alone, and l_out-L the residual after it (with a control vector
// added when one is loaded).
var qwen2Table = &HookTable{
	Arch:  "qwen2",
	Kinds: []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
	Notes: []string{
		"ln_final.hook_normalized includes the final RMSNorm weight (llama.cpp does not fold it into the unembedding)",
		"attn_out is W_O z (Qwen2 has no output-projection bias); llama.cpp leaves that node unnamed, and lldiff finds it as the MUL_MAT that reads blk.L.attn_output.weight",
		"the q, k and v biases are added before RoPE, which rotates NEOX-style (dimension i with i + d_head/2)",
		"resid_post includes a loaded control vector; mlp_out never does",
	},
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inp_embd", h.Layer)
		case AttnOut:
			return Node{Layer: -1, Op: "MUL_MAT", Src: fmt.Sprintf("blk.%d.attn_output.weight", h.Layer)}
		case MLPOut:
			return Node{Name: "ffn_out", Layer: h.Layer, NotSrc: fmt.Sprintf("ffn_inp-%d", h.Layer)}
		}
		return commonNode(h)
	},
}

// qwen3Table follows llama.cpp's src/models/qwen3.cpp: qwen2's graph
// without the q, k and v biases, with an RMSNorm over each query and key
// head (weights attn_q_norm and attn_k_norm, one per head dimension)
// before RoPE. build_attn returns W_O z unnamed, as for qwen2.
var qwen3Table = &HookTable{
	Arch:  "qwen3",
	Kinds: qwen2Table.Kinds,
	Notes: []string{
		"ln_final.hook_normalized includes the final RMSNorm weight (llama.cpp does not fold it into the unembedding)",
		"attn_out is W_O z; llama.cpp leaves that node unnamed, and lldiff finds it as the MUL_MAT that reads blk.L.attn_output.weight",
		"each query and key head is RMS-normalized (with attn_q_norm and attn_k_norm) before RoPE, which rotates NEOX-style; z is computed from them, attention patterns are not hooks",
		"resid_post includes a loaded control vector; mlp_out never does",
	},
	node: qwen2Table.node,
}

// phi3Table follows llama.cpp's src/models/phi3.cpp: one fused QKV
// product whose Q, K and V are views, NEOX RoPE, the attention output W_O
// z unnamed (as qwen2's), the residual add after it unnamed too, a SwiGLU
// MLP whose gate and up halves come from one product (ffn_out-L is its
// output), and the residual add after the MLP named l_out-L.
//
// resid_mid is the unnamed ADD with a source that is the W_O product or,
// in the last layer, GET_ROWS of it (Via). No other ADD of the graph has
// such a source: phi3 has no attention-output bias and no Q, K, V or norm
// biases; l_out-L is named (the unnamed-only match excludes it); with a
// control vector loaded, the add of mlp_out to resid_mid becomes unnamed,
// but it reads resid_mid and ffn_out-L, neither of which reads
// blk.L.attn_output.weight; and the layer's GET_ROWS and MUL_MAT are not
// ADDs. (A LoRA adapter on W_O would add one more unnamed ADD reading the
// product; lldiff loads no adapters.)
var phi3Table = &HookTable{
	Arch:  "phi3",
	Kinds: []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
	Notes: []string{
		"ln_final.hook_normalized includes the final RMSNorm weight (llama.cpp does not fold it into the unembedding)",
		"attn_out is W_O z; llama.cpp leaves that node unnamed, and lldiff finds it as the MUL_MAT that reads blk.L.attn_output.weight",
		"resid_mid is resid_pre + attn_out; llama.cpp leaves it unnamed, and lldiff finds it as the ADD that reads the W_O product (in the last layer, the rows of it kept for output)",
		"Q, K and V are slices of one product with blk.L.attn_qkv.weight; mlp_out is W_down(silu(g) * u) with g|u one product with blk.L.ffn_up.weight",
		"resid_post includes a loaded control vector; mlp_out never does",
	},
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inp_embd", h.Layer)
		case AttnOut:
			return Node{Layer: -1, Op: "MUL_MAT", Src: fmt.Sprintf("blk.%d.attn_output.weight", h.Layer)}
		case ResidMid:
			return Node{Layer: -1, Op: "ADD", ViaOp: "MUL_MAT", Via: fmt.Sprintf("blk.%d.attn_output.weight", h.Layer)}
		case MLPOut:
			return named("ffn_out", h.Layer)
		}
		return commonNode(h)
	},
}

// gemma2Table follows llama.cpp's src/models/gemma2-iswa.cpp and
// TransformerLens's Gemma 2 blocks, whose hook_attn_out and hook_mlp_out
// are taken after the post-attention and post-MLP RMSNorms, so that
// resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out
// still hold. llama.cpp names the scaled embedding inp_scaled, the
// post-attention norm (the MUL by its weight) attn_post_norm-L and the
// residual after it sa_out-L; it names the post-MLP norm ffn_post_norm
// without a layer, in every layer, so lldiff finds each as the MUL that
// reads blk.L.post_ffw_norm.weight.
var gemma2Table = &HookTable{
	Arch:  "gemma2",
	Kinds: []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost, LnFinal, Logits},
	Notes: []string{
		"resid_pre of layer 0 is the token embedding times sqrt(d_model) (llama.cpp's inp_scaled)",
		"attn_out and mlp_out are taken after the post-attention and post-MLP RMSNorms (TransformerLens's Gemma 2 convention), so resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out",
		"attention scores are soft-capped, c·tanh(s/c) with c = gemma2.attn_logit_softcapping, and every other layer (0, 2, ...) attends within gemma2.attention.sliding_window positions",
		"logits are soft-capped with gemma2.final_logit_softcapping; the logit lens applies the same cap in norm mode",
		"ln_final.hook_normalized includes the final RMSNorm weight (Gemma's converter stores 1 + w, the weight llama.cpp multiplies by)",
		"resid_post includes a loaded control vector; mlp_out never does",
	},
	node: func(h Hook) Node {
		switch h.Kind {
		case ResidPre:
			return residPre("inp_scaled", h.Layer)
		case AttnOut:
			return named("attn_post_norm", h.Layer)
		case ResidMid:
			return named("sa_out", h.Layer)
		case MLPOut:
			return Node{Name: "ffn_post_norm", Layer: -1, Op: "MUL", Src: fmt.Sprintf("blk.%d.post_ffw_norm.weight", h.Layer)}
		}
		return commonNode(h)
	},
}

// gemma3Table follows llama.cpp's src/models/gemma3.cpp: gemma2's graph
// with per-head q and k norms, no attention soft-cap, and the post-MLP
// norm named ffn_post_norm-L.
var gemma3Table = &HookTable{
	Arch:  "gemma3",
	Kinds: gemma2Table.Kinds,
	Notes: []string{
		"resid_pre of layer 0 is the token embedding times sqrt(d_model) (llama.cpp's inp_scaled)",
		"attn_out and mlp_out are taken after the post-attention and post-MLP RMSNorms (TransformerLens's Gemma convention), so resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out",
		"each query and key head is RMS-normalized before RoPE; with gemma3.attention.sliding_window, five layers in six attend within the window and rotate with base 10000, the sixth attends globally with gemma3.rope.freq_base",
		"logits are soft-capped only when the file sets gemma3.final_logit_softcapping (Gemma 3 does not)",
		"resid_post includes a loaded control vector; mlp_out never does",
	},
	node: func(h Hook) Node {
		if h.Kind == MLPOut {
			return named("ffn_post_norm", h.Layer)
		}
		return gemma2Table.node(h)
	},
}

// hookTables are the tables by architecture, in the form HookTableFor
// returns: gptneox with the parallel residual of Pythia and GPT-NeoX-20B.
var hookTables = map[string]*HookTable{
	"llama":   llamaTable,
	"gpt2":    gpt2Table,
	"gptneox": gptneoxParallelTable,
	"qwen2":   qwen2Table,
	"qwen3":   qwen3Table,
	"phi3":    phi3Table,
	"gemma2":  gemma2Table,
	"gemma3":  gemma3Table,
}

// HookTableFor returns the hook table of an architecture
// (general.architecture), or an error listing the supported ones. For
// gptneox it is the table of the parallel residual, which every released
// GPT-NeoX model uses; HookTableOf reads the file's choice.
func HookTableFor(arch string) (*HookTable, error) {
	t, ok := hookTables[arch]
	if !ok {
		var names []string
		for n := range hookTables {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("architecture %q has no hook table in lldiff (supported: %s)", arch, strings.Join(names, ", "))
	}
	return t, nil
}

// HookTableOf returns the hook table of the model in, taking the variant
// of the architecture from its metadata (gptneox.use_parallel_residual).
func HookTableOf(in *Info) (*HookTable, error) {
	if in.Arch == "gptneox" && !in.ParallelResidual {
		return gptneoxSequentialTable, nil
	}
	return HookTableFor(in.Arch)
}
