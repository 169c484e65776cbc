package contrast

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func texts(ps []Prompt) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Text)
	}
	return s
}

func TestReadPrompts(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		o                   ReadOptions
		want                []string
		wantSrc             string // Source of the last prompt, after the file name
	}{
		{"lines", "a.txt", "one\n\ntwo \n", ReadOptions{}, []string{"one", "two "}, ":3"},
		{"crlf and bom", "a.txt", "\ufeffone\r\ntwo\r\n", ReadOptions{}, []string{"one", "two"}, ":2"},
		{"no final newline", "a.txt", "one\ntwo", ReadOptions{}, []string{"one", "two"}, ":2"},
		{"escapes off", "a.txt", `a\nb`, ReadOptions{}, []string{`a\nb`}, ":1"},
		{"escapes on", "a.txt", `a\nb\t\\\x41\q`, ReadOptions{Escapes: true}, []string{"a\nb\t\\A\\q"}, ":1"},
		{"jsonl strings and objects", "a.jsonl", "\"x\\ny\"\n{\"text\": \"z\"}\n", ReadOptions{Escapes: true}, []string{"x\ny", "z"}, ":2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.file, tc.content)
			got, err := ReadPrompts(p, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(texts(got), "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", texts(got), tc.want)
			}
			if src := got[len(got)-1].Source; src != p+tc.wantSrc {
				t.Errorf("source %q, want %q", src, p+tc.wantSrc)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"empty", "a.txt", "", "has no prompts"},
		{"blank lines only", "a.txt", "\n  \n\n", "has no prompts"},
		{"bad json", "a.jsonl", "\"ok\"\n{nope\n", "a.jsonl:2: not a JSON string or object"},
		{"pair in a prompt file", "a.jsonl", `{"a": "x", "b": "y"}`, "--pairs"},
		{"object without text", "a.jsonl", `{"prompt": "x"}`, `"text" field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPrompts(writeFile(t, tc.file, tc.content), ReadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "\n", "has no pairs"},
		{"missing b", `{"a": "x"}`, `both an "a" and a "b"`},
		{"empty a", `{"a": " ", "b": "y"}`, "is empty"},
		{"not an object", `["x", "y"]`, ":1: not a JSON object"},
	} {
		t.Run("pairs "+tc.name, func(t *testing.T) {
			_, err := ReadPairs(writeFile(t, "p.jsonl", tc.content))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := ReadPrompts(filepath.Join(t.TempDir(), "missing.txt"), ReadOptions{}); err == nil {
		t.Error("a missing file gave no error")
	}
}

func TestLoad(t *testing.T) {
	a := writeFile(t, "a.txt", "he ran\nhe sat\n")
	b3 := writeFile(t, "b.txt", "she ran\nshe sat\nshe ate\n")
	pairs := writeFile(t, "p.jsonl", `{"a": "he ran", "b": "she ran"}`+"\n\n"+`{"a": "he sat", "b": "she sat"}`+"\n")

	d, err := Load(a, b3, false, ReadOptions{})
	if err != nil || d.Paired || len(d.A) != 2 || len(d.B) != 3 {
		t.Fatalf("unpaired: %+v, %v", d, err)
	}
	_, err = Load(a, b3, true, ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), "has 2") || !strings.Contains(err.Error(), "has 3") {
		t.Fatalf("unequal pair counts: err = %v, want both counts named", err)
	}
	d, err = Load(pairs, "", false, ReadOptions{})
	if err != nil || !d.Paired || strings.Join(texts(d.B), "|") != "she ran|she sat" {
		t.Fatalf("pairs: %+v, %v", d, err)
	}
	if d.A[1].Source != pairs+":3" {
		t.Errorf("source %q, want line 3", d.A[1].Source)
	}
	if _, err := Load(a, "", false, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "--b") {
		t.Errorf("text file without B: err = %v, want a hint at --b", err)
	}
}
