package models

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Kind is the kind of an activation hook, the part of a TransformerLens hook
// name that does not depend on the layer.
type Kind string

// Hook kinds. Per-layer kinds have one activation per layer; model-level kinds
// (LnFinal, Logits) have one per model.
const (
	ResidPre  Kind = "resid_pre"  // blocks.L.hook_resid_pre
	AttnOut   Kind = "attn_out"   // blocks.L.hook_attn_out
	ResidMid  Kind = "resid_mid"  // blocks.L.hook_resid_mid
	MLPOut    Kind = "mlp_out"    // blocks.L.hook_mlp_out
	ResidPost Kind = "resid_post" // blocks.L.hook_resid_post
	Z         Kind = "z"          // blocks.L.attn.hook_z
	LnFinal   Kind = "ln_final"   // ln_final.hook_normalized
	Logits    Kind = "logits"     // logits
)

// LayerKinds are the per-layer kinds in the order a layer computes them.
var LayerKinds = []Kind{ResidPre, Z, AttnOut, ResidMid, MLPOut, ResidPost}

// ModelKinds are the kinds that exist once per model.
var ModelKinds = []Kind{LnFinal, Logits}

// PerLayer reports whether k has one activation per layer.
func (k Kind) PerLayer() bool { return k != LnFinal && k != Logits }

// Hook names one activation: a kind at a layer. Layer is -1 for model-level
// kinds.
type Hook struct {
	Kind  Kind
	Layer int
}

// Name returns the full TransformerLens name, for example
// "blocks.3.hook_resid_post" or "ln_final.hook_normalized".
func (h Hook) Name() string {
	switch h.Kind {
	case LnFinal:
		return "ln_final.hook_normalized"
	case Logits:
		return "logits"
	case Z:
		return fmt.Sprintf("blocks.%d.attn.hook_z", h.Layer)
	}
	return fmt.Sprintf("blocks.%d.hook_%s", h.Layer, h.Kind)
}

// Short returns the short name, for example "resid_post.3".
func (h Hook) Short() string {
	if !h.Kind.PerLayer() {
		return string(h.Kind)
	}
	return fmt.Sprintf("%s.%d", h.Kind, h.Layer)
}

func (h Hook) String() string { return h.Name() }

// HookError is a bad hook specification. Its message names the bad part and
// the accepted forms.
type HookError struct {
	Spec    string
	Problem string
}

func (e *HookError) Error() string {
	return fmt.Sprintf("hook %q: %s (accepted: full TransformerLens names such as blocks.3.hook_resid_post, "+
		"short names such as resid_post.3, resid_post.* or resid_post for every layer, resid_post.-1 for the last layer; "+
		"kinds: %s)", e.Spec, e.Problem, kindList())
}

func kindList() string {
	var s []string
	for _, k := range LayerKinds {
		s = append(s, string(k))
	}
	for _, k := range ModelKinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

func parseKind(s string) (Kind, bool) {
	for _, k := range LayerKinds {
		if string(k) == s {
			return k, true
		}
	}
	for _, k := range ModelKinds {
		if string(k) == s {
			return k, true
		}
	}
	return "", false
}

// ParseHook parses one hook specification for a model with nLayer layers and
// returns every hook it names. Accepted forms: full TransformerLens names
// ("blocks.3.hook_resid_post", "blocks.3.attn.hook_z",
// "ln_final.hook_normalized", "logits"), short names ("resid_post.3"),
// all layers ("resid_post", "resid_post.*", "blocks.*.hook_resid_post"),
// and negative layers counted from the end ("resid_post.-1").
func ParseHook(spec string, nLayer int) ([]Hook, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil, &HookError{Spec: spec, Problem: "empty hook name"}
	}
	switch s {
	case "ln_final.hook_normalized", "ln_final", "hook_normalized":
		return []Hook{{LnFinal, -1}}, nil
	case "logits":
		return []Hook{{Logits, -1}}, nil
	}
	var kindStr, layerStr string
	if strings.HasPrefix(s, "blocks.") {
		rest := strings.TrimPrefix(s, "blocks.")
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			return nil, &HookError{Spec: spec, Problem: "missing hook after the layer"}
		}
		layerStr = rest[:dot]
		name := rest[dot+1:]
		switch {
		case name == "attn.hook_z":
			kindStr = string(Z)
		case strings.HasPrefix(name, "hook_"):
			kindStr = strings.TrimPrefix(name, "hook_")
		default:
			return nil, &HookError{Spec: spec, Problem: fmt.Sprintf("unknown hook %q", name)}
		}
	} else if dot := strings.LastIndexByte(s, '.'); dot >= 0 {
		kindStr, layerStr = s[:dot], s[dot+1:]
	} else {
		kindStr, layerStr = s, "*"
	}
	kind, ok := parseKind(kindStr)
	if !ok {
		return nil, &HookError{Spec: spec, Problem: fmt.Sprintf("unknown kind %q", kindStr)}
	}
	if !kind.PerLayer() {
		return nil, &HookError{Spec: spec, Problem: fmt.Sprintf("%s has no layer", kind)}
	}
	if layerStr == "*" {
		hooks := make([]Hook, nLayer)
		for l := range hooks {
			hooks[l] = Hook{kind, l}
		}
		return hooks, nil
	}
	l, err := strconv.Atoi(layerStr)
	if err != nil {
		return nil, &HookError{Spec: spec, Problem: fmt.Sprintf("layer %q is not a number", layerStr)}
	}
	if l < 0 {
		l += nLayer
	}
	if l < 0 || l >= nLayer {
		return nil, &HookError{Spec: spec, Problem: fmt.Sprintf("layer %s is out of range: the model has %d layers (0..%d, or -1..-%d from the end)",
			layerStr, nLayer, nLayer-1, nLayer)}
	}
	return []Hook{{kind, l}}, nil
}

// ParseHooks parses a comma-separated list of hook specifications and returns
// the hooks in model order without duplicates.
func ParseHooks(specs string, nLayer int) ([]Hook, error) {
	var all []Hook
	for _, s := range strings.Split(specs, ",") {
		h, err := ParseHook(s, nLayer)
		if err != nil {
			return nil, err
		}
		all = append(all, h...)
	}
	return SortHooks(all), nil
}

// SortHooks sorts hooks in model order (layer, then kind order within a
// layer, model-level hooks last) and removes duplicates.
func SortHooks(hooks []Hook) []Hook {
	order := map[Kind]int{}
	for i, k := range LayerKinds {
		order[k] = i
	}
	for i, k := range ModelKinds {
		order[k] = len(LayerKinds) + i
	}
	out := append([]Hook(nil), hooks...)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		la, lb := a.Layer, b.Layer
		if la < 0 {
			la = 1 << 30
		}
		if lb < 0 {
			lb = 1 << 30
		}
		if la != lb {
			return la < lb
		}
		return order[a.Kind] < order[b.Kind]
	})
	n := 0
	for i, h := range out {
		if i > 0 && h == out[n-1] {
			continue
		}
		out[n] = h
		n++
	}
	return out[:n]
}
