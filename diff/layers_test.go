package diff

import (
	"slices"
	"strings"
	"testing"
)

func TestParseLayers(t *testing.T) {
	for _, tc := range []struct {
		spec string
		n    int
		want []int
		// err, when set, is a part of the error message (from ParseLayers
		// or Resolve)
		err     string
		all     bool
		isRange bool
	}{
		{spec: "", n: 3, want: []int{0, 1, 2}, all: true},
		{spec: "all", n: 2, want: []int{0, 1}, all: true},
		{spec: " * ", n: 2, want: []int{0, 1}, all: true},
		{spec: "1", n: 5, want: []int{1}},
		{spec: "-1", n: 5, want: []int{4}},
		{spec: "3, 0,-1,3", n: 5, want: []int{0, 3, 4}},
		{spec: "2:3", n: 5, want: []int{2, 3}, isRange: true},
		{spec: "2:2", n: 5, want: []int{2}, isRange: true},
		{spec: "-3:-1", n: 5, want: []int{2, 3, 4}, isRange: true},
		{spec: "2:-1", n: 5, want: []int{2, 3, 4}, isRange: true},
		{spec: "0,2:3", n: 5, want: []int{0, 2, 3}},
		// a range may reach past the model: llama.cpp's
		// --control-vector-layer-range takes the layers there are
		{spec: "2:100", n: 5, want: []int{2, 3, 4}, isRange: true},
		{spec: "7:9", n: 5, want: nil, isRange: true},
		{spec: "5", n: 5, err: "layer 5 is out of range: the model has 5 layers (0..4, or -1..-5 from the end)"},
		{spec: "-6", n: 5, err: "layer -6 is out of range"},
		{spec: "-6:-1", n: 5, err: "layer -6 is out of range", isRange: true},
		{spec: "4:-3", n: 5, err: "runs from layer 4 back to layer 2", isRange: true},
		{spec: "3:2", n: 5, err: `"3:2": a range is FROM:TO with FROM <= TO`},
		{spec: "-1:-2", n: 5, err: "FROM <= TO"},
		{spec: "two", n: 5, err: `"two" is not a layer number`},
		{spec: "1:x", n: 5, err: `"1:x" is not a layer number`},
		{spec: "1,", n: 5, err: `"" is not a layer number`},
		{spec: ":3", n: 5, err: "not a layer number"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			l, err := ParseLayers("--layers", tc.spec)
			var got []int
			if err == nil {
				if l.All() != tc.all || l.IsRange() != tc.isRange || l.String() != tc.spec {
					t.Errorf("All %v IsRange %v String %q, want %v %v %q", l.All(), l.IsRange(), l.String(), tc.all, tc.isRange, tc.spec)
				}
				got, err = l.Resolve(tc.n)
			}
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--layers") {
					t.Errorf("err = %v, want one naming --layers and containing %q", err, tc.err)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case !slices.Equal(got, tc.want):
				t.Errorf("Resolve(%d) = %v, want %v", tc.n, got, tc.want)
			}
		})
	}
}

// TestLayersZero: the zero value is every layer, as an empty flag is.
func TestLayersZero(t *testing.T) {
	var l Layers
	if got, err := l.Resolve(3); err != nil || !slices.Equal(got, []int{0, 1, 2}) || !l.All() {
		t.Errorf("zero Layers resolve to %v, %v", got, err)
	}
}
