package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTerminal(t *testing.T) {
	for _, tc := range []struct{ in, want, lines string }{
		{"plain text", "plain text", "plain text"},
		{`C:\models\a.gguf`, `C:\models\a.gguf`, `C:\models\a.gguf`},
		{"héllo ▁world 日本", "héllo ▁world 日本", "héllo ▁world 日本"},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`, `\x1b]0;pwned\x07`},
		{"\x1b[31mred", `\x1b[31mred`, `\x1b[31mred`},
		{"a\tb\nc\r", `a\x09b\x0ac\x0d`, "a\tb\nc\\x0d"},
		{"del\x7f nul\x00", `del\x7f nul\x00`, `del\x7f nul\x00`},
		// C1 CSI as a character, and as a lone byte (not UTF-8)
		{"\u009b31m", `\u009b31m`, `\u009b31m`},
		{"\x9b31m", `\x9b31m`, `\x9b31m`},
		{"abc\u202edcba", `abc\u202edcba`, `abc\u202edcba`},
		{"\u2066x\u2069\u200f\u061c\u2028", `\u2066x\u2069\u200f\u061c\u2028`, `\u2066x\u2069\u200f\u061c\u2028`},
		{"", "", ""},
	} {
		if got := Terminal(tc.in); got != tc.want {
			t.Errorf("Terminal(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := Lines(tc.in); got != tc.lines {
			t.Errorf("Lines(%q) = %q, want %q", tc.in, got, tc.lines)
		}
	}
}

// TestTerminalEveryRune: no output of Terminal holds a rune a terminal
// obeys, whatever the input.
func TestTerminalEveryRune(t *testing.T) {
	var b strings.Builder
	for r := rune(0); r < 0x3000; r++ {
		b.WriteRune(r)
	}
	b.WriteString("\xff\xfe\x80") // not UTF-8
	out := Terminal(b.String())
	for _, r := range out {
		// U+FFFD would be a byte that is not UTF-8 left in
		if Unsafe(r) || r == utf8.RuneError {
			t.Fatalf("Terminal left %U", r)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07\n\t") {
		t.Error("Terminal left a control character")
	}
}

func BenchmarkTerminalSafe(b *testing.B) {
	s := strings.Repeat("an ordinary token ▁piece ", 8)
	for b.Loop() {
		Terminal(s)
	}
}
