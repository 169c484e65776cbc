package models

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The tokenizer checks follow llama.cpp's vocabulary loader
// (llama_vocab::impl::load in llama-vocab.cpp), which trusts the file: it
// asserts that token texts are unique, reads tokenizer.ggml.scores and
// tokenizer.ggml.token_type as raw arrays of one float32 and one int32 per
// token whatever their length and type, and indexes its token table with
// special token ids it does not check. Each rule below names what llama.cpp
// would do with a file that breaks it.

// tokenizerNames says what each tokenizer.ggml.model value llama.cpp knows
// is.
var tokenizerNames = map[string]string{
	"llama":    "SentencePiece",
	"gpt2":     "byte-level BPE",
	"bert":     "WordPiece, the tokenizer of BERT encoders",
	"t5":       "Unigram, the tokenizer of T5",
	"rwkv":     "the RWKV world tokenizer",
	"plamo2":   "the PLaMo-2 tokenizer",
	"none":     "no tokenizer",
	"no_vocab": "no tokenizer",
}

// archTokenizers lists the tokenizer.ggml.model values lldiff accepts for
// each supported architecture: the tokenizers of decoder-only models, which
// llama.cpp runs with any of them and whose files lldiff checks completely.
// A vocab-only file of another architecture takes the same ones.
var archTokenizers = map[string][]string{
	"llama":   {"llama", "gpt2"},
	"gpt2":    {"llama", "gpt2"},
	"gptneox": {"llama", "gpt2"},
	"qwen2":   {"llama", "gpt2"},
	"qwen3":   {"llama", "gpt2"},
	"phi3":    {"llama", "gpt2"},
	"gemma2":  {"llama", "gpt2"},
	"gemma3":  {"llama", "gpt2"},
}

var defaultTokenizers = []string{"llama", "gpt2"}

// specialDefaults are the special token ids llama.cpp uses for each
// tokenizer when the file has none, or one outside the vocabulary; -1 is
// none.
var specialDefaults = map[string]map[string]int{
	"llama": {"bos": 1, "eos": 2, "unknown": 0},
	"gpt2":  {"bos": 11, "eos": 11},
}

// specialIDKeys are the special token ids llama.cpp reads, as uint32, from
// tokenizer.ggml.<name>_token_id.
var specialIDKeys = []string{"bos", "eos", "eot", "eom", "unknown", "seperator", "padding", "mask",
	"fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep", "prefix", "suffix", "middle"}

// llama.cpp's token types (enum llama_token_type), the values of
// tokenizer.ggml.token_type.
const (
	tokenTypeNormal = 1
	tokenTypeByte   = 6
	maxTokenType    = 6
)

const (
	fixVocabDamaged  = "the vocabulary is damaged, perhaps by one flipped bit, or was written by a broken converter; download the file again or convert it again with llama.cpp's convert_hf_to_gguf.py"
	fixWrongTokenize = "the file's tokenizer does not belong to this model; convert the model again with llama.cpp's convert_hf_to_gguf.py"
)

// CheckVocab checks the tokenizer of f (the tokenizer.ggml.* keys) as
// llama.cpp's vocabulary loader reads it, and nothing else: it is the part
// of CheckRunnable that a vocab-only load needs, so that tokenizing with a
// vocab-only file is as safe as running a model. Problems are reported in
// one *FormatError.
func (f *File) CheckVocab() error {
	if f.Architecture() == "" {
		return &FormatError{Path: f.Path, Problem: "no general.architecture key: the file does not say what model it holds", Fix: fixNotGGUF}
	}
	c := checker{what: "cannot use this vocabulary"}
	c.vocab(f)
	return c.err(f)
}

// vocab checks the tokenizer.ggml.* keys of f and returns the vocabulary
// size, 0 when the tokens cannot be read.
func (c *checker) vocab(f *File) int {
	model, ok := c.tokenizerModel(f)
	toks, n := c.tokens(f)
	if !ok || n == 0 {
		return n
	}
	c.uniqueTokens(toks)
	scores, _ := c.perToken(f, "tokenizer.ggml.scores", ggufFloat32, n).([]float32)
	for i, s := range scores {
		if math.IsNaN(float64(s)) {
			c.addFix(fixVocabDamaged, "tokenizer.ggml.scores[%d] is NaN: the SentencePiece merges compare scores, and NaN has no order", i)
			break
		}
	}
	types, _ := c.perToken(f, "tokenizer.ggml.token_type", ggufInt32, n).([]int32)
	for i, t := range types {
		if t < 0 || t > maxTokenType {
			c.addFix(fixVocabDamaged, "tokenizer.ggml.token_type[%d] is %d, not a llama.cpp token type (0 to %d)", i, t, maxTokenType)
			break
		}
	}
	switch model {
	case "llama":
		for i, t := range types {
			if t == tokenTypeByte && !isByteToken(toks[i]) {
				// llama.cpp reads the byte from the text's characters 3
				// and 4, and throws when there are none
				c.addFix(fixVocabDamaged, "tokenizer.ggml.tokens[%d] is %q, a byte token (token_type 6) whose text is not of the form <0xXX>", i, toks[i])
				break
			}
		}
	case "gpt2":
		c.merges(f)
		for i, s := range toks {
			if (types == nil || types[i] == tokenTypeNormal) && !utf8.ValidString(s) {
				// llama.cpp decodes every normal token of a byte-level
				// BPE vocabulary from UTF-8 when it loads
				c.addFix(fixVocabDamaged, "tokenizer.ggml.tokens[%d] is %q, not valid UTF-8, which no byte-level BPE token can be", i, s)
				break
			}
		}
	}
	c.specialIDs(f, model, n)
	for _, k := range []string{"add_bos_token", "add_eos_token", "add_sep_token", "add_space_prefix", "remove_extra_whitespaces"} {
		c.requireType(f, "tokenizer.ggml."+k, ggufBool, false, false)
	}
	c.requireType(f, "tokenizer.ggml.pre", ggufString, false, false)
	c.requireType(f, "tokenizer.ggml.token_type_count", ggufUint32, false, false)
	c.phi3Tokens(f, toks)
	return n
}

// tokenizerModel checks tokenizer.ggml.model and returns it; ok is false
// when it is missing or not one lldiff accepts.
func (c *checker) tokenizerModel(f *File) (string, bool) {
	const key = "tokenizer.ggml.model"
	v, ok := f.Get(key)
	if !ok {
		c.addFix(fixWrongTokenize, "missing metadata key %s: the file does not say which tokenizer its vocabulary is for", key)
		return "", false
	}
	model, ok := v.(string)
	if !ok {
		c.addf("metadata key %s has type %s, llama.cpp requires string", key, valueTypeName(v))
		return "", false
	}
	arch := f.Architecture()
	allowed, ok := archTokenizers[arch]
	if !ok {
		allowed = defaultTokenizers
	}
	if slices.Contains(allowed, model) {
		return model, true
	}
	var names []string
	for _, a := range allowed {
		names = append(names, fmt.Sprintf("%q (%s)", a, tokenizerNames[a]))
	}
	what, known := tokenizerNames[model]
	if !known {
		what = "a tokenizer llama.cpp does not know"
	}
	c.addFix(fixWrongTokenize, "%s is %q (%s), which does not fit a %s model: lldiff takes %s", key, model, what, arch, strings.Join(names, " or "))
	return model, false
}

// tokens returns tokenizer.ggml.tokens and its length.
func (c *checker) tokens(f *File) ([]string, int) {
	const key = "tokenizer.ggml.tokens"
	v, ok := f.Get(key)
	if !ok {
		c.addFix(fixWrongTokenize, "no %s: the file has no vocabulary", key)
		return nil, 0
	}
	toks, ok := v.([]string)
	if !ok {
		c.addf("metadata key %s has type %s, llama.cpp requires array of string", key, valueTypeName(v))
		return nil, 0
	}
	if len(toks) == 0 {
		c.addFix(fixVocabDamaged, "%s is empty: the file has no vocabulary, and llama.cpp would read special tokens past its end", key)
		return nil, 0
	}
	if len(toks) > math.MaxInt32 {
		c.addf("%s has %d tokens, more than llama.cpp's 32-bit token ids can number", key, len(toks))
		return nil, 0
	}
	return toks, len(toks)
}

// uniqueTokens checks that no two tokens have the same text once llama.cpp
// has renamed each empty token i to "[EMPTY_i]": its loader asserts it.
func (c *checker) uniqueTokens(toks []string) {
	seen := make(map[string]int, len(toks))
	for i, s := range toks {
		if s == "" {
			s = "[EMPTY_" + strconv.Itoa(i) + "]"
		}
		j, dup := seen[s]
		if !dup {
			seen[s] = i
			continue
		}
		if toks[i] == "" || toks[j] == "" {
			c.addFix(fixVocabDamaged, "tokenizer.ggml.tokens[%d] and [%d] both read %q once llama.cpp names the empty token %q: llama.cpp requires every token text to be unique and aborts", j, i, s, s)
		} else {
			c.addFix(fixVocabDamaged, "tokenizer.ggml.tokens holds %q twice (ids %d and %d): llama.cpp requires every token text to be unique and aborts", s, j, i)
		}
		return
	}
}

// perToken checks that key, when present, is an array of n values of type
// elem, as llama.cpp reads it, and returns it (nil after a problem).
func (c *checker) perToken(f *File, key string, elem ggufType, n int) any {
	v, ok := f.Get(key)
	if !ok {
		return nil
	}
	t, _ := ggufTypeOf(v)
	if !t.array || t.elem != elem {
		c.addFix(fixVocabDamaged, "metadata key %s has type %s, llama.cpp requires array of %s: it reads the data as one %s per token", key, valueTypeName(v), elem, elem)
		return nil
	}
	var m int
	switch x := v.(type) {
	case []float32:
		m = len(x)
	case []int32:
		m = len(x)
	}
	if m < n {
		c.addFix(fixVocabDamaged, "%s has %d values for %d tokens: llama.cpp reads one per token, past the end of the array", key, m, n)
		return nil
	}
	if m > n {
		c.addFix(fixVocabDamaged, "%s has %d values for %d tokens: it belongs to another vocabulary", key, m, n)
		return nil
	}
	return v
}

// merges checks tokenizer.ggml.merges, which llama.cpp's BPE tokenizer
// requires as an array of strings.
func (c *checker) merges(f *File) {
	const key = "tokenizer.ggml.merges"
	v, ok := f.Get(key)
	if !ok {
		c.addFix(fixVocabDamaged, "missing metadata key %s: the gpt2 (byte-level BPE) tokenizer needs its merges", key)
		return
	}
	if _, ok := v.([]string); !ok {
		c.addFix(fixVocabDamaged, "metadata key %s has type %s, llama.cpp requires array of string: it aborts on another type", key, valueTypeName(v))
	}
}

// specialIDs checks the special token ids: each must have llama.cpp's type
// (uint32), bos and eos must be in the vocabulary, and an id llama.cpp
// falls back to (its default for the tokenizer, when the key is missing or
// out of range) must be too: llama.cpp indexes its token table with it.
func (c *checker) specialIDs(f *File, model string, n int) {
	for _, name := range specialIDKeys {
		key := "tokenizer.ggml." + name + "_token_id"
		v, present := f.Get(key)
		if present {
			if _, ok := v.(uint32); !ok {
				c.addf("metadata key %s has type %s, llama.cpp requires uint32", key, valueTypeName(v))
				continue
			}
		}
		id := -1
		if present {
			id = int(v.(uint32))
		}
		if (name == "bos" || name == "eos") && id >= n {
			c.addFix(fixVocabDamaged, "%s is %d, outside the vocabulary of %d tokens", key, id, n)
			continue
		}
		if id >= 0 && id < n {
			continue
		}
		def, ok := specialDefaults[model][name]
		if !ok || def < n {
			continue
		}
		why := "is missing"
		if present {
			why = fmt.Sprintf("is %d, outside the vocabulary", id)
		}
		c.addFix(fixVocabDamaged, "%s %s, so llama.cpp uses its default for the %s tokenizer, %d, which is outside the vocabulary of %d tokens", key, why, model, def, n)
	}
}

// phi3Tokens checks the tokens llama.cpp looks up by text in a model whose
// general.name names Phi-3: it throws when one is missing.
func (c *checker) phi3Tokens(f *File, toks []string) {
	name, _ := f.String("general.name")
	name = strings.ToLower(name)
	if !strings.Contains(name, "phi-3") && !strings.Contains(name, "phi3") {
		return
	}
	for _, want := range []string{"</s>", "<unk>", "<s>", "<|endoftext|>"} {
		if !slices.Contains(toks, want) {
			c.addFix(fixWrongTokenize, "general.name %q makes llama.cpp treat the vocabulary as Phi-3's, but it has no token %q", name, want)
			return
		}
	}
}

// isByteToken reports whether s is a SentencePiece byte token, <0xXX>.
func isByteToken(s string) bool {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return false
	}
	_, err := strconv.ParseUint(s[3:5], 16, 8)
	return err == nil
}

// SPMGaps describes what a SentencePiece vocabulary can spell: llama.cpp's
// SentencePiece tokenizer spells a character it has no token for with byte
// tokens (<0xXX>, or a token of the byte itself), and aborts the program
// when one of those is missing too. Real vocabularies without all 256 byte
// tokens exist (TinyStories-656K has 77), so this is checked on the text,
// before llama.cpp sees it.
type SPMGaps struct {
	tokens      map[string]bool
	hasByte     [256]bool
	spacePrefix bool
}

// SPMGaps returns the gaps of f's vocabulary, or nil when its tokenizer is
// not SentencePiece ("llama") or every byte has a byte token: then
// llama.cpp can tokenize any text.
func (f *File) SPMGaps() *SPMGaps {
	if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
		return nil
	}
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	g := &SPMGaps{tokens: make(map[string]bool, len(toks)), spacePrefix: true}
	for i, s := range toks {
		if s == "" {
			s = "[EMPTY_" + strconv.Itoa(i) + "]"
		}
		g.tokens[s] = true
	}
	all := true
	for b := range 256 {
		g.hasByte[b] = g.tokens[fmt.Sprintf("<0x%02X>", b)] || g.tokens[string([]byte{byte(b)})]
		all = all && g.hasByte[b]
	}
	if all {
		return nil
	}
	if v, ok := f.Bool("tokenizer.ggml.add_space_prefix"); ok {
		g.spacePrefix = v
	}
	return g
}

// Unspellable returns the first character of text that the vocabulary
// neither holds as a token nor can spell with byte tokens, and true when
// there is one. It splits the text as llama.cpp's SentencePiece tokenizer
// does (spaces become "▁", characters by the length their first byte
// announces), and looks at all of it, also at text that special tokens
// would cover when they are parsed. A nil *SPMGaps spells everything.
func (g *SPMGaps) Unspellable(text string) (string, bool) {
	if g == nil {
		return "", false
	}
	s := strings.ReplaceAll(text, " ", "▁")
	if g.spacePrefix {
		s = "▁" + s
	}
	for i := 0; i < len(s); {
		n := min(utf8SeqLen(s[i]), len(s)-i)
		ch := s[i : i+n]
		i += n
		if g.tokens[ch] {
			continue
		}
		for j := 0; j < len(ch); j++ {
			if !g.hasByte[ch[j]] {
				return ch, true
			}
		}
	}
	return "", false
}

// utf8SeqLen is llama.cpp's unicode_len_utf8: the length of a UTF-8
// sequence from its first byte, 1 for a byte that cannot start one.
func utf8SeqLen(b byte) int {
	return [16]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4}[b>>4]
}
