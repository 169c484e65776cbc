package reference

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/models"
)

// Vocab is a plain Go tokenizer over a GGUF file's vocabulary, for tests
// that run analyses on the reference engine without llama.cpp. It is not
// llama.cpp's tokenizer: it splits greedily, longest vocabulary entry
// first, where SentencePiece and BPE apply their scores or merges, so it
// may split a word differently. Decoding (Piece, Text, Kind) is exact.
//
// SentencePiece vocabularies ("llama") get a leading space and spaces as
// "▁", and bytes without an entry become <0xNN> byte tokens; byte-level
// BPE vocabularies ("gpt2") see the text through GPT-2's byte-to-unicode
// mapping.
type Vocab struct {
	tokens []string
	types  []int32
	byText map[string]int32
	maxLen int
	model  string
	bos    int32
	addBOS bool
}

// NewVocab reads the vocabulary of f.
func NewVocab(f *models.File) (*Vocab, error) {
	info, err := f.Info()
	if err != nil {
		return nil, err
	}
	toks, ok := f.Strings("tokenizer.ggml.tokens")
	if !ok || len(toks) == 0 {
		return nil, fmt.Errorf("reference: %s has no tokenizer.ggml.tokens", f.Path)
	}
	v := &Vocab{tokens: toks, byText: make(map[string]int32, len(toks)), model: info.TokenizerModel, bos: int32(info.BOS), addBOS: info.AddBOS}
	if t, ok := f.Get("tokenizer.ggml.token_type"); ok {
		v.types, _ = t.([]int32)
	}
	for i, t := range toks {
		if _, dup := v.byText[t]; !dup {
			v.byText[t] = int32(i)
		}
		v.maxLen = max(v.maxLen, len(t))
	}
	return v, nil
}

// llama.cpp's token types (tokenizer.ggml.token_type).
const (
	typeNormal  = 1
	typeUnknown = 2
	typeControl = 3
	typeUser    = 4
	typeUnused  = 5
	typeByte    = 6
)

func (v *Vocab) typ(id int32) int32 {
	if int(id) < len(v.types) {
		return v.types[id]
	}
	return typeNormal
}

// NVocab returns the number of tokens.
func (v *Vocab) NVocab() int { return len(v.tokens) }

// Tokenize splits text greedily into the longest vocabulary entries (see
// Vocab), with a BOS token first as o says.
func (v *Vocab) Tokenize(text string, o models.TokenizeOptions) ([]int32, error) {
	var out []int32
	add := v.addBOS
	switch o.BOS {
	case models.BOSYes:
		add = true
	case models.BOSNo:
		add = false
	}
	if add {
		if v.bos < 0 {
			return nil, fmt.Errorf("this model's vocabulary has no BOS token; tokenize without BOS")
		}
		out = append(out, v.bos)
	}
	if text == "" {
		return out, nil
	}
	var s string
	if v.model == "gpt2" {
		var b strings.Builder
		for _, c := range []byte(text) {
			b.WriteRune(byteToRune[c])
		}
		s = b.String()
	} else {
		s = "▁" + strings.ReplaceAll(text, " ", "▁")
	}
	for len(s) > 0 {
		n := min(len(s), v.maxLen)
		for ; n > 0; n-- {
			if id, ok := v.byText[s[:n]]; ok && v.typ(id) != typeControl && v.typ(id) != typeByte && v.typ(id) != typeUnused {
				out = append(out, id)
				break
			}
		}
		if n > 0 {
			s = s[n:]
			continue
		}
		// no entry starts here: a byte token
		id, ok := v.byText[fmt.Sprintf("<0x%02X>", s[0])]
		if !ok {
			return nil, fmt.Errorf("reference: the vocabulary has no token for byte 0x%02X of %q", s[0], text)
		}
		out = append(out, id)
		s = s[1:]
	}
	return out, nil
}

// Piece returns the bytes token id stands for in decoded text.
func (v *Vocab) Piece(id int32) []byte {
	if id < 0 || int(id) >= len(v.tokens) {
		return nil
	}
	t := v.tokens[id]
	switch {
	case v.typ(id) == typeUnused:
		return nil // as llama.cpp: reserved rows decode to nothing
	case v.typ(id) == typeByte && len(t) == 6 && strings.HasPrefix(t, "<0x"):
		b, err := strconv.ParseUint(t[3:5], 16, 8)
		if err == nil {
			return []byte{byte(b)}
		}
	case v.model == "gpt2" && v.typ(id) != typeControl:
		var out []byte
		for _, r := range t {
			b, ok := runeToByte[r]
			if !ok {
				return []byte(t)
			}
			out = append(out, b)
		}
		return out
	}
	return []byte(strings.ReplaceAll(t, "▁", " "))
}

// Text returns the token's vocabulary entry as stored.
func (v *Vocab) Text(id int32) string {
	if id < 0 || int(id) >= len(v.tokens) {
		return ""
	}
	return v.tokens[id]
}

// Kind returns the token's kind.
func (v *Vocab) Kind(id int32) models.TokenKind {
	if id < 0 || int(id) >= len(v.tokens) {
		return models.KindUnknown
	}
	switch v.typ(id) {
	case typeControl:
		return models.KindControl
	case typeByte:
		return models.KindByte
	case typeUnknown:
		return models.KindUnknown
	case typeUser:
		return models.KindUser
	case typeUnused:
		return models.KindUnused
	}
	return models.KindNormal
}

// Printable returns a one-line form of the token, as llamacpp's does.
func (v *Vocab) Printable(id int32) string {
	switch v.Kind(id) {
	case models.KindControl, models.KindByte, models.KindUnused:
		if t := v.Text(id); t != "" {
			return safetext.Terminal(t)
		}
	}
	return models.PrintableBytes(v.Piece(id))
}

// byteToRune is GPT-2's bytes_to_unicode: printable bytes stand for
// themselves, the others for the runes from U+0100 on.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := map[rune]byte{}
	n := 0
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = rune(256 + n)
			n++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()
