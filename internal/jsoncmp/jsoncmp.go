// Package jsoncmp compares two JSON documents with a tolerance on numbers:
// how a sharded and merged lldiff result is checked against an unsharded
// one, whose activations differ in the last bits (a sequence's activations
// depend slightly on the other sequences of its batch).
package jsoncmp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Options configure Compare.
type Options struct {
	// Rel and Abs: numbers x and y are equal when
	// |x − y| <= Abs + Rel·max(|x|, |y|).
	Rel, Abs float64
	// Skip lists paths whose values are not compared (timings), as
	// dot-separated keys with [] for any array index:
	// "throughput.seconds", "components[].proj_a".
	Skip []string
}

// Compare returns the differences between the JSON documents a and b, one
// line each (at most limit; 0 means all), or an error when either is not
// JSON.
func Compare(a, b []byte, o Options, limit int) ([]string, error) {
	var x, y any
	for _, d := range []struct {
		b []byte
		v *any
	}{{a, &x}, {b, &y}} {
		dec := json.NewDecoder(bytes.NewReader(d.b))
		dec.UseNumber()
		if err := dec.Decode(d.v); err != nil {
			return nil, err
		}
	}
	c := &cmp{o: o, limit: limit}
	c.walk("", x, y)
	return c.diffs, nil
}

type cmp struct {
	o     Options
	limit int
	diffs []string
}

func (c *cmp) add(path, format string, args ...any) {
	if c.limit > 0 && len(c.diffs) >= c.limit {
		return
	}
	c.diffs = append(c.diffs, path+": "+fmt.Sprintf(format, args...))
}

func (c *cmp) skipped(path string) bool {
	for _, s := range c.o.Skip {
		if s == path {
			return true
		}
	}
	return false
}

func (c *cmp) walk(path string, x, y any) {
	if c.skipped(path) {
		return
	}
	switch xv := x.(type) {
	case map[string]any:
		yv, ok := y.(map[string]any)
		if !ok {
			c.add(path, "object vs %s", kind(y))
			return
		}
		keys := map[string]bool{}
		for k := range xv {
			keys[k] = true
		}
		for k := range yv {
			keys[k] = true
		}
		ks := make([]string, 0, len(keys))
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			p := k
			if path != "" {
				p = path + "." + k
			}
			a, inA := xv[k]
			b, inB := yv[k]
			switch {
			case c.skipped(p):
			case !inA:
				c.add(p, "only in the second document")
			case !inB:
				c.add(p, "only in the first document")
			default:
				c.walk(p, a, b)
			}
		}
	case []any:
		yv, ok := y.([]any)
		if !ok {
			c.add(path, "array vs %s", kind(y))
			return
		}
		if len(xv) != len(yv) {
			c.add(path, "%d elements vs %d", len(xv), len(yv))
			return
		}
		for i := range xv {
			c.walk(path+"[]", xv[i], yv[i])
		}
	case json.Number:
		yv, ok := y.(json.Number)
		if !ok {
			c.add(path, "%s vs %s", xv, kind(y))
			return
		}
		a, err1 := xv.Float64()
		b, err2 := yv.Float64()
		if err1 != nil || err2 != nil {
			if xv != yv {
				c.add(path, "%s vs %s", xv, yv)
			}
			return
		}
		if math.Abs(a-b) > c.o.Abs+c.o.Rel*math.Max(math.Abs(a), math.Abs(b)) {
			c.add(path, "%s vs %s", xv, yv)
		}
	default:
		if fmt.Sprint(x) != fmt.Sprint(y) || kind(x) != kind(y) {
			c.add(path, "%s vs %s", show(x), show(y))
		}
	}
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case json.Number:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func show(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}
