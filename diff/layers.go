package diff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Layers is a choice of layers as the command line gives it, parsed before
// the model is known and resolved against its layer count with Resolve.
// The zero value is every layer.
type Layers struct {
	flag  string // the flag, for messages
	spec  string
	items []layerItem // none: every layer
}

// layerItem is one layer (from == to, !span) or a range FROM:TO, both
// included; negative ends count from the last layer (-1).
type layerItem struct {
	from, to int
	span     bool
}

// ParseLayers parses a choice of layers; flag names it in messages
// ("--layers"). Accepted forms:
//
//	"", "all", "*"   every layer
//	"0,3,-1"         layers, negative from the end (-1 is the last)
//	"2:5"            layers 2 to 5, both included; "-3:-1" the last three
//
// Layers and ranges may be mixed in one comma-separated list. A range may
// reach past the last layer of a model (it takes the layers the model has,
// as llama.cpp's --control-vector-layer-range does); a single layer may
// not. Only the syntax is checked here; Resolve checks the layers against
// a model.
func ParseLayers(flag, spec string) (Layers, error) {
	l := Layers{flag: flag, spec: spec}
	s := strings.TrimSpace(spec)
	switch s {
	case "", "all", "*":
		return l, nil
	}
	for _, raw := range strings.Split(s, ",") {
		part := strings.TrimSpace(raw)
		a, b, span := strings.Cut(part, ":")
		from, errA := strconv.Atoi(strings.TrimSpace(a))
		to, errB := from, error(nil)
		if span {
			to, errB = strconv.Atoi(strings.TrimSpace(b))
		}
		if errA != nil || errB != nil {
			return Layers{}, fmt.Errorf("%s: %q is not a layer number (give all, layers such as 0,3,-1, or a range FROM:TO such as 2:5)", flag, part)
		}
		// ends of one sign compare now; a mixed range (2:-1) once the
		// model's layer count is known
		if span && (from < 0) == (to < 0) && from > to {
			return Layers{}, fmt.Errorf("%s %q: a range is FROM:TO with FROM <= TO, such as 2:5", flag, part)
		}
		l.items = append(l.items, layerItem{from: from, to: to, span: span})
	}
	return l, nil
}

// All reports whether l is every layer.
func (l Layers) All() bool { return len(l.items) == 0 }

// IsRange reports whether l is one range FROM:TO.
func (l Layers) IsRange() bool { return len(l.items) == 1 && l.items[0].span }

// String returns the specification as given.
func (l Layers) String() string { return l.spec }

// Resolve returns the chosen layers of a model with n layers, ascending and
// without duplicates. A single layer outside the model is an error; a
// range takes the layers it shares with the model, which may be none (a
// range past the last layer): the caller says what an empty choice means.
func (l Layers) Resolve(n int) ([]int, error) {
	if l.All() {
		ls := make([]int, n)
		for i := range ls {
			ls[i] = i
		}
		return ls, nil
	}
	var ls []int
	for _, it := range l.items {
		from, err := l.resolveEnd(it.from, n, it.span)
		if err != nil {
			return nil, err
		}
		to, err := l.resolveEnd(it.to, n, it.span)
		if err != nil {
			return nil, err
		}
		if from > to {
			return nil, fmt.Errorf("%s: the range %d:%d runs from layer %d back to layer %d of a model with %d layers; a range is FROM:TO with FROM <= TO", l.flag, it.from, it.to, from, to, n)
		}
		for x := from; x <= min(to, n-1); x++ {
			if !slices.Contains(ls, x) {
				ls = append(ls, x)
			}
		}
	}
	slices.Sort(ls)
	return ls, nil
}

// resolveEnd resolves one layer (negative from the end) of a model with n
// layers. The end of a range may lie past the last layer.
func (l Layers) resolveEnd(x, n int, span bool) (int, error) {
	r := x
	if r < 0 {
		r += n
	}
	if r < 0 || (r >= n && !span) {
		return 0, fmt.Errorf("%s: layer %d is out of range: the model has %d layers (0..%d, or -1..-%d from the end)", l.flag, x, n, n-1, n)
	}
	return r, nil
}
