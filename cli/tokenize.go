package cli

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/llamacpp"
)

// TokenizeOptions are the options of `lldiff tokenize`.
type TokenizeOptions struct {
	IO    *IOStreams
	Model modelFlags
	Texts []string
	JSON  bool
}

func newCmdTokenize(io *IOStreams, runF func(*TokenizeOptions) error) *cobra.Command {
	opts := &TokenizeOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "tokenize -m MODEL TEXT [TEXT...]",
		Short: "Show how a model tokenizes text: ids, pieces, BOS, split words",
		Long: `Show the tokens of one or more texts: ids and printable pieces, where "▁"
marks a space (SentencePiece's own marker, also used for GPT-2's "Ġ"), <0xNN>
a byte token and <s> a control token. With several texts, differences in
token count are explained word by word.

Works on vocab-only GGUF files too.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Texts = args
			if err := opts.Model.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return tokenizeRun(opts)
		},
	}
	opts.Model.register(cmd, false)
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

// tokenJSON is one token in every JSON document lldiff prints.
type tokenJSON struct {
	Pos   int    `json:"pos"`
	ID    int32  `json:"id"`
	Piece string `json:"piece"`
	Text  string `json:"text"`
	Kind  string `json:"kind"`
	// Bytes holds the token's raw bytes in hex when they are not valid
	// UTF-8 on their own (a byte token that is part of a multi-byte
	// character), where Text cannot carry them.
	Bytes string `json:"bytes,omitempty"`
}

type wordJSON struct {
	Word   string `json:"word"`
	Start  int    `json:"start"`
	Tokens int    `json:"tokens"`
}

type tokenizedJSON struct {
	Text   string      `json:"text"`
	BOS    bool        `json:"bos"`
	Tokens []tokenJSON `json:"tokens"`
	// Words lists the words split into more than one token.
	Words []wordJSON `json:"split_words"`
}

func tokenList(m *llamacpp.Model, ids []int32) []tokenJSON {
	out := make([]tokenJSON, len(ids))
	for i, id := range ids {
		b := m.Piece(id)
		out[i] = tokenJSON{Pos: i, ID: id, Piece: m.Printable(id), Text: string(b), Kind: string(m.Kind(id))}
		if !utf8.Valid(b) {
			out[i].Bytes = hex.EncodeToString(b)
		}
	}
	return out
}

// splitWords groups tokens into words (a word starts at a token whose text
// starts with a space, or after a control token) and returns the words made
// of more than one token. A lone space token counts as part of the next word:
// that is how SentencePiece splits " 1999" into "▁" + "1" + ...
func splitWords(toks []tokenJSON) []wordJSON {
	out := []wordJSON{} // [] rather than null in JSON
	start := -1
	flush := func(end int) {
		if start >= 0 && end-start > 1 {
			var w strings.Builder
			for _, t := range toks[start:end] {
				w.WriteString(t.Text)
			}
			out = append(out, wordJSON{Word: w.String(), Start: start, Tokens: end - start})
		}
	}
	for i, t := range toks {
		if t.Kind == string(llamacpp.KindControl) {
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

func tokenizeRun(opts *TokenizeOptions) error {
	m, err := opts.Model.load(true)
	if err != nil {
		return err
	}
	defer m.Close()
	var docs []tokenizedJSON
	for _, text := range opts.Texts {
		ids, err := m.Tokenize(text, opts.Model.tokenizeOptions())
		if err != nil {
			return err
		}
		toks := tokenList(m, ids)
		bos := len(ids) > 0 && ids[0] == m.BOS() && m.BOS() >= 0
		docs = append(docs, tokenizedJSON{Text: text, BOS: bos, Tokens: toks, Words: splitWords(toks)})
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, struct {
			Model   string          `json:"model"`
			Prompts []tokenizedJSON `json:"prompts"`
		}{opts.Model.Model, docs})
	}
	out := opts.IO.Out
	for i, d := range docs {
		if i > 0 {
			fmt.Fprintln(out)
		}
		bos := "no BOS"
		if d.BOS {
			bos = "BOS added"
		}
		fmt.Fprintf(out, "%q → %d tokens (%s)\n", d.Text, len(d.Tokens), bos)
		var rows [][]string
		for _, t := range d.Tokens {
			rows = append(rows, []string{fmt.Sprint(t.Pos), fmt.Sprint(t.ID), t.Piece, t.Kind})
		}
		if err := table(opts.IO, []string{"pos", "id", "piece", "kind"}, rows); err != nil {
			return err
		}
		for _, w := range d.Words {
			var pieces []string
			for _, t := range d.Tokens[w.Start : w.Start+w.Tokens] {
				pieces = append(pieces, t.Piece)
			}
			note := ""
			if d.Tokens[w.Start].Text == " " {
				note = " (a lone space token \"▁\" comes first)"
			}
			fmt.Fprintf(out, "  %q is %d tokens: %s%s\n", w.Word, w.Tokens, strings.Join(pieces, " | "), note)
		}
	}
	if len(docs) > 1 {
		fmt.Fprintln(out)
		fmt.Fprint(out, tokenCountSummary(docs))
	}
	return nil
}

func tokenCountSummary(docs []tokenizedJSON) string {
	var b strings.Builder
	same := true
	for _, d := range docs[1:] {
		if len(d.Tokens) != len(docs[0].Tokens) {
			same = false
		}
	}
	if same {
		fmt.Fprintf(&b, "all %d texts have %d tokens: positions line up\n", len(docs), len(docs[0].Tokens))
		return b.String()
	}
	b.WriteString("token counts differ: positions after the first difference do not line up\n")
	for _, d := range docs {
		fmt.Fprintf(&b, "  %d tokens: %q\n", len(d.Tokens), d.Text)
	}
	return b.String()
}
