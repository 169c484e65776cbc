package contrast

import (
	"encoding/json"
	"fmt"
	"strings"
)

// EachPrompt calls f with every prompt of a prompt file in order, reading
// the file line by line without holding it in memory: the same files and
// rules as ReadPrompts (text, one prompt per line, or .jsonl of JSON
// strings or {"text": ...} objects; blank lines skipped). index counts the
// prompts from 0. It fails on the first bad line, or on a file without
// prompts.
func EachPrompt(path string, o ReadOptions, f func(index int, p Prompt) error) error {
	n := 0
	err := eachLine(path, func(line string, no int) error {
		src := fmt.Sprintf("%s:%d", path, no)
		text := line
		if IsJSONL(path) {
			var err error
			if text, err = jsonlPrompt(line, src); err != nil {
				return err
			}
		} else if o.Escapes {
			text = unescape(line)
		}
		n++
		return f(n-1, Prompt{Text: text, Source: src})
	})
	if err == nil && n == 0 {
		return fmt.Errorf("%s has no prompts (the file is empty or holds only blank lines)", path)
	}
	return err
}

// CountPrompts returns the number of prompts EachPrompt would give.
func CountPrompts(path string, o ReadOptions) (int, error) {
	n := 0
	err := EachPrompt(path, o, func(int, Prompt) error { n++; return nil })
	return n, err
}

// jsonlPrompt returns the prompt of a .jsonl line: a JSON string, or an
// object's "text".
func jsonlPrompt(line, src string) (string, error) {
	var s string
	if err := json.Unmarshal([]byte(line), &s); err == nil {
		if strings.TrimSpace(s) == "" {
			return "", fmt.Errorf("%s: the prompt is empty: give some text, or delete the line", src)
		}
		return s, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &obj); err != nil {
		return "", fmt.Errorf("%s: not a JSON string or object: %v", src, err)
	}
	if _, ok := obj["a"]; ok {
		return "", fmt.Errorf(`%s: holds a pair ("a"/"b" fields): give one prompt per line, as a JSON string or {"text": ...}`, src)
	}
	raw, ok := obj["text"]
	if !ok {
		return "", fmt.Errorf(`%s: a JSON object needs a "text" field (or give the prompt as a JSON string)`, src)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf(`%s: "text" is not a string: %v`, src, err)
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf(`%s: "text" is empty`, src)
	}
	return s, nil
}
