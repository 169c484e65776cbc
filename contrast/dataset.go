package contrast

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prompt is one prompt of a dataset and where it was read.
type Prompt struct {
	Text string
	// Source is "file:line".
	Source string
}

// Dataset is the two sets of a contrast. When Paired, A[i] pairs with B[i].
type Dataset struct {
	A, B   []Prompt
	Paired bool
}

// ReadOptions configure the dataset readers.
type ReadOptions struct {
	// Escapes turns \n, \t, \r, \\, \", \' and \xNN inside text lines into
	// the characters they stand for, as llama.cpp's cvector-generator does
	// with its prompt files. JSON lines have JSON's own escapes and are not
	// processed again.
	Escapes bool
}

// maxLine is the longest line the readers accept.
const maxLine = 16 << 20

// IsJSONL reports whether path is read as JSON lines (by its .jsonl or
// .ndjson extension).
func IsJSONL(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return true
	}
	return false
}

// ReadPrompts reads one set of prompts. A text file holds one prompt per
// line; a .jsonl file one JSON string, or object with a "text" field, per
// line. Blank lines are skipped (as cvector-generator does). It fails on an
// empty file, and on a .jsonl line holding a pair (use ReadPairs).
func ReadPrompts(path string, o ReadOptions) ([]Prompt, error) {
	var out []Prompt
	err := eachLine(path, func(line string, no int) error {
		src := fmt.Sprintf("%s:%d", path, no)
		if !IsJSONL(path) {
			if o.Escapes {
				line = unescape(line)
			}
			out = append(out, Prompt{Text: line, Source: src})
			return nil
		}
		var s string
		if err := json.Unmarshal([]byte(line), &s); err == nil {
			if strings.TrimSpace(s) == "" {
				return fmt.Errorf("%s: the prompt is empty: give some text, or delete the line", src)
			}
			out = append(out, Prompt{Text: s, Source: src})
			return nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			return fmt.Errorf("%s: not a JSON string or object: %v", src, err)
		}
		_, hasA := obj["a"]
		_, hasB := obj["b"]
		if hasA || hasB {
			return fmt.Errorf(`%s: holds a pair ("a"/"b" fields): pass a file of pairs alone, as --pairs %s`, src, path)
		}
		raw, ok := obj["text"]
		if !ok {
			return fmt.Errorf(`%s: a JSON object needs a "text" field (or give the prompt as a JSON string)`, src)
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf(`%s: "text" is not a string: %v`, src, err)
		}
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf(`%s: "text" is empty`, src)
		}
		out = append(out, Prompt{Text: s, Source: src})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no prompts (the file is empty or holds only blank lines)", path)
	}
	return out, nil
}

// ReadPairs reads a .jsonl file of explicit pairs, one object
// {"a": "...", "b": "..."} per line. Blank lines are skipped.
func ReadPairs(path string) (*Dataset, error) {
	d := &Dataset{Paired: true}
	err := eachLine(path, func(line string, no int) error {
		src := fmt.Sprintf("%s:%d", path, no)
		var p struct {
			A *string `json:"a"`
			B *string `json:"b"`
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			return fmt.Errorf(`%s: not a JSON object {"a": "...", "b": "..."}: %v`, src, err)
		}
		if p.A == nil || p.B == nil {
			return fmt.Errorf(`%s: a pair needs both an "a" and a "b" field`, src)
		}
		if strings.TrimSpace(*p.A) == "" || strings.TrimSpace(*p.B) == "" {
			return fmt.Errorf(`%s: "a" or "b" is empty`, src)
		}
		d.A = append(d.A, Prompt{Text: *p.A, Source: src})
		d.B = append(d.B, Prompt{Text: *p.B, Source: src})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(d.A) == 0 {
		return nil, fmt.Errorf("%s has no pairs (the file is empty or holds only blank lines)", path)
	}
	return d, nil
}

// Load reads a dataset: the pairs of a .jsonl file of {"a","b"} objects
// when bPath is empty, else set A from aPath and set B from bPath, paired
// line by line when paired is set (the counts must then match).
func Load(aPath, bPath string, paired bool, o ReadOptions) (*Dataset, error) {
	if bPath == "" {
		if !IsJSONL(aPath) {
			return nil, fmt.Errorf("%s: give set B too (--b FILE), or a .jsonl file of {\"a\": ..., \"b\": ...} pairs", aPath)
		}
		return ReadPairs(aPath)
	}
	a, err := ReadPrompts(aPath, o)
	if err != nil {
		return nil, err
	}
	b, err := ReadPrompts(bPath, o)
	if err != nil {
		return nil, err
	}
	if paired && len(a) != len(b) {
		return nil, fmt.Errorf("paired sets need as many prompts in A as in B (prompt i of A pairs with prompt i of B), but %s has %d and %s has %d",
			aPath, len(a), bPath, len(b))
	}
	return &Dataset{A: a, B: b, Paired: paired}, nil
}

// eachLine calls f with every non-blank line of the file (without its line
// ending) and its 1-based line number.
func eachLine(path string, f func(line string, no int) error) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	if st, err := fh.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: give a file of prompts, one per line", path)
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	no := 0
	for sc.Scan() {
		no++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if no == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := f(line, no); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: line %d: %w", path, no+1, err)
	}
	return nil
}

// unescape processes the escapes cvector-generator processes in prompt
// files; an unknown or incomplete escape is kept as written.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch n := s[i+1]; n {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '"', '\'':
			b.WriteByte(n)
		case 'x':
			if i+3 < len(s) {
				if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
					b.WriteByte(byte(v))
					i += 3
					continue
				}
			}
			b.WriteString(`\x`)
		default:
			b.WriteByte('\\')
			b.WriteByte(n)
		}
		i++
	}
	return b.String()
}
