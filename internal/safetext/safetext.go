// Package safetext makes text from files safe to print on a terminal.
//
// A GGUF file's metadata, a vocabulary's tokens, a control vector's
// strings and the names in an index.json are written by whoever made the
// file. Printed raw, their control characters would be obeyed by the
// terminal, not shown: ESC starts sequences that set the window title,
// change colours, move the cursor or, on some terminals, write the
// clipboard, and Unicode's bidirectional overrides reorder what the reader
// sees. Every string lldiff prints from a file goes through Terminal (or
// Lines, for text of several lines).
package safetext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Terminal returns s with every character a terminal would obey rather
// than show replaced by a visible escape: C0 controls (tab and newline
// included), DEL and bytes that are not UTF-8 as \xNN, C1 controls,
// Unicode's bidirectional controls and the line and paragraph separators
// as \uNNNN. Everything else, backslashes included, is left as it is, so
// ordinary text is unchanged.
func Terminal(s string) string { return escape(s, false) }

// Lines is Terminal for text of several lines: it keeps newlines and tabs
// and escapes the rest as Terminal does.
func Lines(s string) string { return escape(s, true) }

func escape(s string, lines bool) string {
	if safe(s, lines) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case lines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case Unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// safe reports whether s needs no escape, the common case, without
// allocating.
func safe(s string, lines bool) bool {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return false
			}
		case lines && (r == '\n' || r == '\t'):
		case r < 0x20 || r == 0x7f || Unsafe(r):
			return false
		}
	}
	return true
}

// Unsafe reports whether a terminal may obey r rather than show it: a C0
// or C1 control, DEL, a bidirectional control (U+061C, U+200E, U+200F,
// U+202A–U+202E, U+2066–U+2069) or a line or paragraph separator (U+2028,
// U+2029).
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
