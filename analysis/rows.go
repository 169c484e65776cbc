package analysis

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RowSpec says which positions of each prompt a contrast takes: the last
// token, every position (All, from the first difference of a pair), or a
// list of indices, negative from the end.
type RowSpec struct {
	All     bool
	Indices []int
}

// ParseRowSpec parses "last", "all" or indices such as "-1" or "0,3,last".
func ParseRowSpec(s string) (RowSpec, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "last":
		return RowSpec{Indices: []int{-1}}, nil
	case "all":
		return RowSpec{All: true}, nil
	}
	var r RowSpec
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "last" {
			r.Indices = append(r.Indices, -1)
			continue
		}
		i, err := strconv.Atoi(part)
		if err != nil {
			return r, fmt.Errorf(`--pos %q: %q is not a position; use last, all, or indices such as -1 or 0,3`, s, part)
		}
		if !slices.Contains(r.Indices, i) {
			r.Indices = append(r.Indices, i)
		}
	}
	return r, nil
}

// Resolve returns the rows of a prompt of n tokens (for indices).
func (r RowSpec) Resolve(n int) ([]int, error) {
	out := make([]int, len(r.Indices))
	for k, i := range r.Indices {
		j := i
		if j < 0 {
			j += n
		}
		if j < 0 || j >= n {
			return nil, fmt.Errorf("position %d is outside a prompt of %d tokens (valid: %d..%d)", i, n, -n, n-1)
		}
		out[k] = j
	}
	return out, nil
}
