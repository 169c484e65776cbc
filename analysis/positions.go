package analysis

import (
	"fmt"
	"strings"

	"github.com/lldiff/lldiff/diff"
)

// AlignPositions pairs positions of the clean and the corrupt prompt when
// their token counts differ: the common prefix position by position, the
// rest aligned from the end (the last token with the last token), so that
// a word that takes another number of tokens shifts nothing after it.
// Positions of the longer prompt with no partner are left out. A is the
// clean position, B the corrupt one.
func AlignPositions(clean, corrupt []int32) []diff.PosPair {
	pre := 0
	for pre < min(len(clean), len(corrupt)) && clean[pre] == corrupt[pre] {
		pre++
	}
	var pairs []diff.PosPair
	for q := range corrupt {
		if q < pre {
			pairs = append(pairs, diff.PosPair{A: q, B: q})
			continue
		}
		if c := q + len(clean) - len(corrupt); c >= pre && c < len(clean) {
			pairs = append(pairs, diff.PosPair{A: c, B: q})
		}
	}
	return pairs
}

// CheckPosSpec refuses what a position list would take silently for
// something else: "-0" (0 from the end is not a position, and Atoi reads it
// as the first token), and an empty or blank entry.
func CheckPosSpec(spec string) error {
	s := strings.TrimSpace(spec)
	if s == "" {
		return nil // the default of the analysis
	}
	for _, part := range strings.Split(s, ",") {
		for _, side := range strings.Split(part, ":") {
			side = strings.TrimSpace(side)
			if side == "" && strings.Contains(s, ",") {
				return inputErr("--pos %q has an empty entry: give positions such as 0,3 or -1", spec)
			}
			if strings.HasPrefix(side, "-") && strings.Trim(side[1:], "0") == "" && len(side) > 1 {
				return inputErr("--pos %q: %q is not a position: negative positions count from the end, -1 being the last token; use 0 for the first token", spec, side)
			}
		}
	}
	return nil
}

// Patch position modes.
const (
	PosEach = "each" // every position separately (equal token counts only)
	PosAll  = "all"  // every position at once, aligned by AlignPositions
	PosLast = "last" // the last position of each prompt
	PosList = "list" // positions or clean:corrupt pairs, diff.ParsePositions' notation
)

// PatchPositions resolves a position specification (each, all, last, or a
// list in diff.ParsePositions' notation) into groups of position pairs, one
// group per patched cell of a component, and returns the mode (PosEach,
// PosAll, PosLast or PosList). A specification that does not fit the token
// counts is an InputError.
func PatchPositions(spec string, clean, corrupt []int32) (mode string, groups [][]diff.PosPair, notes []string, err error) {
	nc, nk := len(clean), len(corrupt)
	equal := nc == nk
	unequal := fmt.Sprintf("the clean prompt has %d tokens and the corrupt one %d, so position i of one is not position i of the other: "+
		"patching position by position would write activations into the wrong token. Use --pos last (the last position of each), "+
		"--pos all (every position at once, the differing span aligned from the end), explicit clean:corrupt pairs such as --pos %d:%d, "+
		"or reword the prompts so that they tokenize to the same length (lldiff tokenize shows the split)", nc, nk, nc-1, nk-1)
	if err := CheckPosSpec(spec); err != nil {
		return "", nil, nil, err
	}
	switch s := strings.TrimSpace(spec); s {
	case "", PosEach:
		if !equal {
			return "", nil, nil, inputErr("--pos each: %s", unequal)
		}
		for i := range nk {
			groups = append(groups, []diff.PosPair{{A: i, B: i}})
		}
		return PosEach, groups, nil, nil
	case PosAll:
		pairs := AlignPositions(clean, corrupt)
		if !equal {
			notes = append(notes, fmt.Sprintf("--pos all with %d clean and %d corrupt tokens: %d positions patched, the common prefix in place and the rest aligned from the end",
				nc, nk, len(pairs)))
		}
		return PosAll, [][]diff.PosPair{pairs}, notes, nil
	case PosLast:
		return PosLast, [][]diff.PosPair{{{A: nc - 1, B: nk - 1}}}, nil, nil
	default:
		if !equal {
			for _, part := range strings.Split(s, ",") {
				part = strings.TrimSpace(part)
				if !strings.Contains(part, ":") && part != "last" && part != "-1" {
					return "", nil, nil, inputErr("--pos %s: %s", part, unequal)
				}
			}
		}
		pairs, err := diff.ParsePositions(s, nc, nk)
		if err != nil {
			return "", nil, nil, &InputError{Err: fmt.Errorf("--pos: %w (A is the clean prompt, B the corrupt one)", err)}
		}
		for _, p := range pairs {
			groups = append(groups, []diff.PosPair{p})
		}
		return PosList, groups, nil, nil
	}
}
