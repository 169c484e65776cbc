package diff

import (
	"fmt"
	"strconv"
	"strings"
)

// PosPair is one pair of token positions to compare: row A of prompt A with
// row B of prompt B. Both are resolved, non-negative indices.
type PosPair struct {
	A, B int
}

// PositionError is a bad position specification. Its message names the bad
// part and the valid range or the accepted forms.
type PositionError struct {
	Spec    string // the whole specification
	Part    string // the comma-separated part at fault, "" for the whole
	Problem string
}

func (e *PositionError) Error() string {
	if e.Part == "" || e.Part == strings.TrimSpace(e.Spec) {
		return fmt.Sprintf("positions %q: %s", e.Spec, e.Problem)
	}
	return fmt.Sprintf("positions %q: %q: %s", e.Spec, e.Part, e.Problem)
}

const positionForms = `accepted: "last" (the default), "all", indices such as "-1" or "0,3" ` +
	`(negative counts from the end, applied to each prompt), or A:B pairs such as "3:4,5:6"`

// ParsePositions resolves a position specification for prompt A of lenA
// tokens and prompt B of lenB tokens. Accepted forms:
//
//	"" or "last"  the last token of each prompt
//	"all"         every position i paired with i; needs lenA == lenB
//	"-1", "0,3"   indices, negative from the end, applied to each prompt
//	"3:4,-1:-1"   explicit A:B pairs, negatives allowed
//
// Indices and pairs may be mixed in one comma-separated list, and "last" may
// stand for -1 inside it ("0,last", "2:last"). The pairs come back in the
// order given, without duplicates (so "-1,4" with 5 tokens in each prompt
// gives one pair). Errors are *PositionError and name the bad part and the
// valid range.
func ParsePositions(spec string, lenA, lenB int) ([]PosPair, error) {
	for _, p := range []struct {
		name string
		n    int
	}{{"A", lenA}, {"B", lenB}} {
		if p.n <= 0 {
			return nil, &PositionError{Spec: spec, Problem: fmt.Sprintf("prompt %s has no tokens", p.name)}
		}
	}
	s := strings.TrimSpace(spec)
	switch s {
	case "", "last":
		return []PosPair{{lenA - 1, lenB - 1}}, nil
	case "all":
		if lenA != lenB {
			return nil, &PositionError{Spec: spec, Problem: fmt.Sprintf(
				`"all" pairs position i of A with position i of B, but prompt A has %d tokens and prompt B has %d; `+
					`give explicit A:B pairs such as "%d:%d" or use "last"`, lenA, lenB, lenA-1, lenB-1)}
		}
		pairs := make([]PosPair, lenA)
		for i := range pairs {
			pairs[i] = PosPair{i, i}
		}
		return pairs, nil
	}
	var pairs []PosPair
	seen := map[PosPair]bool{}
	for _, raw := range strings.Split(s, ",") {
		part := strings.TrimSpace(raw)
		if part == "" {
			return nil, &PositionError{Spec: spec, Problem: "empty position in the list; " + positionForms}
		}
		var p PosPair
		var err error
		if as, bs, ok := strings.Cut(part, ":"); ok {
			p.A, err = resolve(spec, part, as, "A", lenA)
			if err != nil {
				return nil, err
			}
			p.B, err = resolve(spec, part, bs, "B", lenB)
			if err != nil {
				return nil, err
			}
		} else {
			p.A, err = resolve(spec, part, part, "A", lenA)
			if err != nil {
				return nil, err
			}
			p.B, err = resolve(spec, part, part, "B", lenB)
			if err != nil {
				return nil, err
			}
		}
		if !seen[p] {
			seen[p] = true
			pairs = append(pairs, p)
		}
	}
	return pairs, nil
}

// resolve parses one index s of the part of spec for prompt name with n
// tokens, resolving negative indices from the end.
func resolve(spec, part, s, name string, n int) (int, error) {
	s = strings.TrimSpace(s)
	var i int
	switch s {
	case "last":
		i = -1
	case "all":
		return 0, &PositionError{Spec: spec, Part: part, Problem: `"all" cannot be combined with other positions; use "all" alone`}
	default:
		var err error
		i, err = strconv.Atoi(s)
		if err != nil {
			problem := fmt.Sprintf("%q is not a position; %s", s, positionForms)
			switch {
			case s == "":
				problem = "missing position for prompt " + name + " in an A:B pair"
			case s == strings.TrimSpace(part):
				problem = "not a position; " + positionForms
			}
			return 0, &PositionError{Spec: spec, Part: part, Problem: problem}
		}
	}
	r := i
	if r < 0 {
		r += n
	}
	if r < 0 || r >= n {
		return 0, &PositionError{Spec: spec, Part: part, Problem: fmt.Sprintf(
			"position %d is out of range for prompt %s, which has %d tokens (valid: 0..%d, or -1..-%d from the end)",
			i, name, n, n-1, n)}
	}
	return r, nil
}

// maxDescribed is the most pairs Describe lists before summarizing the rest.
const maxDescribed = 8

// Describe returns a one-line description of pairs, for example
// "position 4 in both prompts", "positions 0..5 in both prompts" or
// "2 position pairs A:B 3:4, 5:6". Long lists are cut after a few items.
func Describe(pairs []PosPair) string {
	if len(pairs) == 0 {
		return "no positions"
	}
	same := true
	for _, p := range pairs {
		if p.A != p.B {
			same = false
			break
		}
	}
	if !same {
		items := make([]string, 0, min(len(pairs), maxDescribed))
		for i, p := range pairs {
			if i == maxDescribed {
				break
			}
			items = append(items, fmt.Sprintf("%d:%d", p.A, p.B))
		}
		if len(pairs) == 1 {
			return "position pair A:B " + items[0]
		}
		return fmt.Sprintf("%d position pairs A:B %s%s", len(pairs), strings.Join(items, ", "), more(len(pairs)-len(items)))
	}
	// Same index in both prompts: compress ascending runs, "0..5, 7".
	var items []string
	n := 0 // indices covered by items
	for i := 0; i < len(pairs) && len(items) < maxDescribed; {
		j := i
		for j+1 < len(pairs) && pairs[j+1].A == pairs[j].A+1 {
			j++
		}
		switch {
		case j == i:
			items = append(items, strconv.Itoa(pairs[i].A))
		case j == i+1:
			items = append(items, strconv.Itoa(pairs[i].A), strconv.Itoa(pairs[j].A))
		default:
			items = append(items, fmt.Sprintf("%d..%d", pairs[i].A, pairs[j].A))
		}
		n += j - i + 1
		i = j + 1
	}
	if len(pairs) == 1 {
		return "position " + items[0] + " in both prompts"
	}
	return "positions " + strings.Join(items, ", ") + more(len(pairs)-n) + " in both prompts"
}

func more(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(", … (%d more)", n)
}
