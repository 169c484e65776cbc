package models

import "testing"

func TestPrintableBytes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "∅"},
		{" happy", "▁happy"},
		{"a\nb\tc\r", `a\nb\tc\r`},
		{"\x1b]0;pwned\x07", "<0x1B>]0;pwned<0x07>"},
		{"\x7f", "<0x7F>"},
		{"\xe2\x96", "<0xE2><0x96>"}, // a character cut in two
		{"\u009b31m", "<U+009B>31m"},
		{"abc\u202edcba\u2066", "abc<U+202E>dcba<U+2066>"},
		{"日本", "日本"},
	} {
		if got := PrintableBytes([]byte(tc.in)); got != tc.want {
			t.Errorf("PrintableBytes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
