package diff

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParsePositions(t *testing.T) {
	tests := []struct {
		spec       string
		lenA, lenB int
		want       []PosPair
	}{
		{"", 5, 6, []PosPair{{4, 5}}},
		{"last", 5, 6, []PosPair{{4, 5}}},
		{"  last ", 5, 6, []PosPair{{4, 5}}},
		{"last", 1, 1, []PosPair{{0, 0}}},
		{"-1", 5, 6, []PosPair{{4, 5}}},
		{"3", 5, 6, []PosPair{{3, 3}}},
		{"0", 1, 1, []PosPair{{0, 0}}},
		{"-0", 2, 2, []PosPair{{0, 0}}},
		{"-5", 5, 6, []PosPair{{0, 1}}}, // first token of A, second of B
		{"-2,-1", 5, 6, []PosPair{{3, 4}, {4, 5}}},
		{"all", 3, 3, []PosPair{{0, 0}, {1, 1}, {2, 2}}},
		{" all", 1, 1, []PosPair{{0, 0}}},
		{"3:4,5:6", 6, 7, []PosPair{{3, 4}, {5, 6}}},
		{"-1:-2", 5, 6, []PosPair{{4, 4}}},
		{" 1 : 2 , 0:0 ", 5, 6, []PosPair{{1, 2}, {0, 0}}},
		{"0,2:-1", 5, 6, []PosPair{{0, 0}, {2, 5}}}, // indices and pairs mixed
		{"0,last", 5, 6, []PosPair{{0, 0}, {4, 5}}},
		{"2:last", 5, 6, []PosPair{{2, 5}}},
		{"-1,4", 5, 5, []PosPair{{4, 4}}},               // the same pair twice
		{"4,-1,0,4:4", 5, 5, []PosPair{{4, 4}, {0, 0}}}, // order kept, duplicates dropped
		{"2,1", 5, 5, []PosPair{{2, 2}, {1, 1}}},        // not sorted
		{"+1", 3, 3, []PosPair{{1, 1}}},                 // strconv accepts a sign
		{"2:1,1:2", 3, 3, []PosPair{{2, 1}, {1, 2}}},    // distinct pairs
		{"0:0,0:1,1:0", 2, 2, []PosPair{{0, 0}, {0, 1}, {1, 0}}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d/%d", tt.spec, tt.lenA, tt.lenB), func(t *testing.T) {
			got, err := ParsePositions(tt.spec, tt.lenA, tt.lenB)
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePositionsErrors(t *testing.T) {
	const (
		notPos = " is not a position; " + positionForms
		rangeA = "is out of range for prompt A, which has 5 tokens (valid: 0..4, or -1..-5 from the end)"
		rangeB = "is out of range for prompt B, which has 6 tokens (valid: 0..5, or -1..-6 from the end)"
	)
	tests := []struct {
		spec       string
		lenA, lenB int
		part       string
		want       string
	}{
		{"all", 5, 6, "",
			`positions "all": "all" pairs position i of A with position i of B, but prompt A has 5 tokens and prompt B has 6; ` +
				`give explicit A:B pairs such as "4:5" or use "last"`},
		{"5", 5, 6, "5", `positions "5": position 5 ` + rangeA},
		{"-6", 5, 6, "-6", `positions "-6": position -6 ` + rangeA},
		{"6", 6, 5, "6", `positions "6": position 6 is out of range for prompt A, which has 6 tokens (valid: 0..5, or -1..-6 from the end)`},
		{"5", 6, 5, "5", `positions "5": position 5 is out of range for prompt B, which has 5 tokens (valid: 0..4, or -1..-5 from the end)`},
		{"0,3:6", 5, 6, "3:6", `positions "0,3:6": "3:6": position 6 ` + rangeB},
		{"1:-7", 5, 6, "1:-7", `positions "1:-7": position -7 ` + rangeB},
		{"9:0", 5, 6, "9:0", `positions "9:0": position 9 ` + rangeA},
		{"x", 5, 6, "x", `positions "x": not a position; ` + positionForms},
		{"first", 5, 6, "first", `positions "first": not a position; ` + positionForms},
		{"1.5", 5, 6, "1.5", `positions "1.5": not a position; ` + positionForms},
		{"1,2;3", 5, 6, "2;3", `positions "1,2;3": "2;3": not a position; ` + positionForms},
		{"1:", 5, 6, "1:", `positions "1:": missing position for prompt B in an A:B pair`},
		{"0, :1", 5, 6, ":1", `positions "0, :1": ":1": missing position for prompt A in an A:B pair`},
		{"1:2:3", 5, 6, "1:2:3", `positions "1:2:3": "2:3"` + notPos},
		{"1:x", 5, 6, "1:x", `positions "1:x": "x"` + notPos},
		{"1,,2", 5, 6, "", `positions "1,,2": empty position in the list; ` + positionForms},
		{"1,", 5, 6, "", `positions "1,": empty position in the list; ` + positionForms},
		{"all,1", 5, 5, "all", `positions "all,1": "all": "all" cannot be combined with other positions; use "all" alone`},
		{"last", 0, 3, "", `positions "last": prompt A has no tokens`},
		{"last", 3, 0, "", `positions "last": prompt B has no tokens`},
		{"all", 0, 0, "", `positions "all": prompt A has no tokens`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d/%d", tt.spec, tt.lenA, tt.lenB), func(t *testing.T) {
			got, err := ParsePositions(tt.spec, tt.lenA, tt.lenB)
			if err == nil {
				t.Fatalf("got %v, want error %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			var pe *PositionError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *PositionError", err)
			}
			if pe.Spec != tt.spec || pe.Part != tt.part {
				t.Errorf("Spec, Part = %q, %q, want %q, %q", pe.Spec, pe.Part, tt.spec, tt.part)
			}
		})
	}
}

// FuzzParsePositions checks the invariants of every successful parse: at
// least one pair, every index in range, no duplicates; and that every error
// is a *PositionError quoting the specification.
func FuzzParsePositions(f *testing.F) {
	for _, s := range []string{"", "last", "all", "-1", "3", "-2,-1", "3:4,5:6", "0,last", "1:", "x,,", "-0:+1"} {
		f.Add(s, 5, 6)
		f.Add(s, 4, 4)
	}
	f.Fuzz(func(t *testing.T, spec string, lenA, lenB int) {
		if lenA > 1<<12 || lenB > 1<<12 {
			t.Skip() // "all" would allocate lenA pairs
		}
		pairs, err := ParsePositions(spec, lenA, lenB)
		if err != nil {
			var pe *PositionError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), fmt.Sprintf("%q", spec)) {
				t.Fatalf("error %q (%T) is not a *PositionError quoting the spec", err, err)
			}
			return
		}
		if len(pairs) == 0 {
			t.Fatalf("no pairs and no error")
		}
		seen := map[PosPair]bool{}
		for _, p := range pairs {
			if p.A < 0 || p.A >= lenA || p.B < 0 || p.B >= lenB {
				t.Fatalf("pair %v out of range for %d, %d tokens", p, lenA, lenB)
			}
			if seen[p] {
				t.Fatalf("duplicate pair %v", p)
			}
			seen[p] = true
		}
	})
}

func TestDescribe(t *testing.T) {
	same := func(idx ...int) []PosPair {
		var ps []PosPair
		for _, i := range idx {
			ps = append(ps, PosPair{i, i})
		}
		return ps
	}
	var upTo20, even20, shifted10 []PosPair
	for i := range 20 {
		upTo20 = append(upTo20, PosPair{i, i})
		even20 = append(even20, PosPair{2 * i, 2 * i})
	}
	for i := range 10 {
		shifted10 = append(shifted10, PosPair{i, i + 1})
	}
	tests := []struct {
		name  string
		pairs []PosPair
		want  string
	}{
		{"none", nil, "no positions"},
		{"one same", same(4), "position 4 in both prompts"},
		{"one pair", []PosPair{{4, 5}}, "position pair A:B 4:5"},
		{"run", same(0, 1, 2, 3, 4, 5), "positions 0..5 in both prompts"},
		{"two adjacent", same(3, 4), "positions 3, 4 in both prompts"},
		{"runs", same(0, 1, 3, 5, 6, 7), "positions 0, 1, 3, 5..7 in both prompts"},
		{"descending", same(2, 1), "positions 2, 1 in both prompts"},
		{"pairs", []PosPair{{3, 4}, {5, 6}}, "2 position pairs A:B 3:4, 5:6"},
		{"mixed", []PosPair{{3, 3}, {5, 6}}, "2 position pairs A:B 3:3, 5:6"},
		{"long run", upTo20, "positions 0..19 in both prompts"},
		{"long same", even20, "positions 0, 2, 4, 6, 8, 10, 12, 14, … (12 more) in both prompts"},
		{"long pairs", shifted10, "10 position pairs A:B 0:1, 1:2, 2:3, 3:4, 4:5, 5:6, 6:7, 7:8, … (2 more)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Describe(tt.pairs); got != tt.want {
				t.Errorf("Describe(%v)\n got %q\nwant %q", tt.pairs, got, tt.want)
			}
		})
	}
}
