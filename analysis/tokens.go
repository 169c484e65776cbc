package analysis

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// Token is one token in every JSON document lldiff prints.
type Token struct {
	Pos   int    `json:"pos"`
	ID    int32  `json:"id"`
	Piece string `json:"piece"`
	Text  string `json:"text"`
	Kind  string `json:"kind"`
	// Bytes holds the token's raw bytes in hex when they are not valid
	// UTF-8 on their own (a byte token that is part of a multi-byte
	// character), where Text cannot carry them.
	Bytes string `json:"bytes,omitempty"`
	// Image says which image embedding the position holds, for image
	// positions of a prompt with images (Kind "image"; image.go).
	Image *ImagePos `json:"image,omitempty"`
}

// Word is a word of a prompt split into several tokens.
type Word struct {
	Word   string `json:"word"`
	Start  int    `json:"start"`
	Tokens int    `json:"tokens"`
}

// Tokens describes ids as tokens of v.
func Tokens(v models.Vocab, ids []int32) []Token {
	out := make([]Token, len(ids))
	for i, id := range ids {
		b := v.Piece(id)
		out[i] = Token{Pos: i, ID: id, Piece: v.Printable(id), Text: string(b), Kind: string(v.Kind(id))}
		if !utf8.Valid(b) {
			out[i].Bytes = hex.EncodeToString(b)
		}
	}
	imagePositions(v, ids, out)
	return out
}

// SplitWords groups tokens into words (a word starts at a token whose text
// starts with a space, or after a control token) and returns the words made
// of more than one token. A lone space token counts as part of the next word:
// that is how SentencePiece splits " 1999" into "▁" + "1" + ...
func SplitWords(toks []Token) []Word {
	out := []Word{} // [] rather than null in JSON
	start := -1
	flush := func(end int) {
		if start >= 0 && end-start > 1 {
			var w strings.Builder
			for _, t := range toks[start:end] {
				w.WriteString(t.Text)
			}
			out = append(out, Word{Word: w.String(), Start: start, Tokens: end - start})
		}
	}
	for i, t := range toks {
		if t.Kind == string(models.KindControl) || t.Image != nil {
			flush(i)
			start = -1
			continue
		}
		newWord := strings.HasPrefix(t.Text, " ") || strings.HasPrefix(t.Text, "\n") || start < 0 || punctuation(t.Text)
		if newWord && !(i > 0 && toks[i-1].Text == " " && start == i-1) {
			flush(i)
			start = i
		}
	}
	flush(len(toks))
	return out
}

// punctuation reports whether s is only punctuation or symbols: such a
// token after a word is not part of the word.
func punctuation(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// TokenizePrompts tokenizes each prompt; a prompt that gives no tokens is
// an InputError.
func TokenizePrompts(v models.Vocab, to models.TokenizeOptions, prompts ...string) ([][]int32, error) {
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		var err error
		if ids[i], err = v.Tokenize(p, to); err != nil {
			return nil, err
		}
	}
	for _, s := range ids {
		if len(s) == 0 {
			if len(prompts) == 1 {
				return nil, inputErr("the prompt gives no tokens")
			}
			return nil, inputErr("a prompt gives no tokens")
		}
	}
	return ids, nil
}

// TokenWarnings explains where the two tokenizations do not line up; the
// last warning says which positions are compared.
func TokenWarnings(a, b []Token, pairs []diff.PosPair) []string {
	var w []string
	if len(a) != len(b) {
		w = append(w, fmt.Sprintf("the prompts have different token counts (A %d, B %d): positions after the first difference do not line up", len(a), len(b)))
	}
	first := -1
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i].ID != b[i].ID {
			first = i
			break
		}
	}
	if first >= 0 {
		w = append(w, fmt.Sprintf("first differing token at position %d: A %q, B %q", first, a[first].Piece, b[first].Piece))
	}
	wa, wb := SplitWords(a), SplitWords(b)
	for _, x := range wa {
		if !hasWord(wb, x.Word, x.Tokens) {
			w = append(w, fmt.Sprintf("A splits %q into %d tokens", x.Word, x.Tokens))
		}
	}
	for _, x := range wb {
		if !hasWord(wa, x.Word, x.Tokens) {
			w = append(w, fmt.Sprintf("B splits %q into %d tokens", x.Word, x.Tokens))
		}
	}
	w = append(w, "comparing "+diff.Describe(pairs))
	return w
}

func hasWord(ws []Word, word string, n int) bool {
	for _, w := range ws {
		if w.Word == word && w.Tokens == n {
			return true
		}
	}
	return false
}

// BOSInfo says where the BOS token at the start of a token sequence came
// from: added by the tokenizer (the model's default or --bos yes), taken
// from the text (special-token text such as <s> parsed with --special), or
// both, which gives the model two BOS tokens.
type BOSInfo struct {
	Added    bool `json:"bos"`
	FromText bool `json:"bos_from_text,omitempty"`
}

// BOSOf returns where the BOS token of ids, tokenized with o, came from.
// The tokenizer adds BOS when the empty text gives it.
func BOSOf(v models.Vocab, o models.TokenizeOptions, ids []int32) BOSInfo {
	withBOS := o
	withBOS.BOS = models.BOSYes
	b, err := v.Tokenize("", withBOS)
	if err != nil || len(b) != 1 || len(ids) == 0 || ids[0] != b[0] {
		return BOSInfo{}
	}
	bos := b[0]
	e, err := v.Tokenize("", o)
	added := err == nil && len(e) > 0 && e[0] == bos
	if !added {
		return BOSInfo{FromText: true}
	}
	return BOSInfo{Added: true, FromText: len(ids) > 1 && ids[1] == bos}
}

// Describe says it in a few words: "BOS added", "no BOS", "BOS from the
// text, none added", "two BOS: one added, one from the text".
func (b BOSInfo) Describe() string {
	switch {
	case b.Added && b.FromText:
		return "two BOS: one added, one from the text"
	case b.Added:
		return "BOS added"
	case b.FromText:
		return "BOS from the text, none added"
	}
	return "no BOS"
}

// BOSWarnings warns about a prompt (named what) that starts with two BOS
// tokens, one added by the tokenizer and one from the text.
func BOSWarnings(v models.Vocab, o models.TokenizeOptions, what string, ids []int32) []string {
	if b := BOSOf(v, o, ids); b.Added && b.FromText {
		return []string{fmt.Sprintf("%s starts with two BOS tokens %s: one added by the tokenizer and one from the text (special-token text parsed with --special); the model was trained with one: drop it from the text or pass --bos no", what, v.Printable(ids[0]))}
	}
	return nil
}
