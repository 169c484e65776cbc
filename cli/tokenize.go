package cli

import (
	"fmt"
	"strings"

	"github.com/lldiff/lldiff/analysis"
	"github.com/spf13/cobra"
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

type tokenizedJSON struct {
	Text string `json:"text"`
	// BOS says whether the tokenizer added a BOS token (not one that
	// came from the text with --special: bos_from_text).
	analysis.BOSInfo
	Warnings []string         `json:"warnings,omitempty"`
	Tokens   []analysis.Token `json:"tokens"`
	// Words lists the words split into more than one token.
	Words []analysis.Word `json:"split_words"`
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
		toks := analysis.Tokens(m, ids)
		to := opts.Model.tokenizeOptions()
		docs = append(docs, tokenizedJSON{
			Text: text, BOSInfo: analysis.BOSOf(m, to, ids), Warnings: analysis.BOSWarnings(m, to, fmt.Sprintf("%q", text), ids),
			Tokens: toks, Words: analysis.SplitWords(toks),
		})
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
		fmt.Fprintf(out, "%q → %d tokens (%s)\n", d.Text, len(d.Tokens), d.BOSInfo.Describe())
		for _, w := range d.Warnings {
			fmt.Fprintln(out, "warning:", w)
		}
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
