package analysis

import (
	"fmt"
	"math"
	"strings"

	"github.com/lldiff/lldiff/lens"
	"github.com/lldiff/lldiff/models"
)

// AnswerScore is how one answer token scores after its prefix.
type AnswerScore struct {
	ID    int32   `json:"id"`
	Piece string  `json:"piece"`
	Rank  int     `json:"rank"`
	Logit float64 `json:"logit"`
	Prob  float64 `json:"prob"`
}

// AnswerTokens returns the tokens the model would have to produce after
// prompt to continue it with ans: the tail of tokenize(prompt+ans) after
// the prompt's own tokens, and a note when that differs from ans tokenized
// alone. That is what matters for SentencePiece, which tokenizes " short"
// alone as a lone "▁" plus "▁short" but produces only "▁short" after a
// prompt. An empty answer is an InputError.
func AnswerTokens(v models.Vocab, prompt string, promptIDs []int32, ans string, to models.TokenizeOptions) ([]int32, string, error) {
	if ans == "" {
		return nil, "", inputErr(`--answer is empty: give the text the model should produce next, with its leading space, e.g. --answer " she"`)
	}
	full, err := v.Tokenize(prompt+ans, to)
	if err != nil {
		return nil, "", err
	}
	noBOS := to
	noBOS.BOS = models.BOSNo
	alone, err := v.Tokenize(ans, noBOS)
	if err != nil {
		return nil, "", err
	}
	var note string
	prefix := len(full) > len(promptIDs)
	for i := 0; prefix && i < len(promptIDs); i++ {
		prefix = full[i] == promptIDs[i]
	}
	if !prefix {
		// The answer merges with the prompt's last token ("gi" + "rl" is
		// "girl"): the model cannot produce it as a continuation of these
		// tokens. The answer tokenized alone is scored when those tokens
		// spell the answer exactly (BPE: "rl"); SentencePiece puts a space
		// in front of a text tokenized alone, and "▁rl" would score " rl".
		spelled := string(pieces(v, alone))
		switch {
		case spelled == ans:
		case len(alone) > 1 && string(v.Piece(alone[0])) == " " && spelled == " "+ans:
			alone = alone[1:] // a lone "▁" the tokenizer put in front
		default:
			return nil, "", inputErr("--answer %q merges with the end of the prompt (together they tokenize as %s), and alone it tokenizes as %s, which reads %q, not %q: "+
				"so the answer has no tokens of its own after this prompt: end the prompt before the merged word and give the whole word as the answer, or an answer with its leading space",
				ans, printables(v, full[max(0, len(promptIDs)-2):]), printables(v, alone), spelled, ans)
		}
		note = fmt.Sprintf("%q merges with the end of the prompt when tokenized together; scored as the tokens %s", ans, printables(v, alone))
		return alone, note, nil
	}
	tail := full[len(promptIDs):]
	if len(alone) > len(tail) && len(alone) > 0 && string(v.Piece(alone[0])) == " " {
		var ps []string
		for _, id := range alone {
			ps = append(ps, v.Printable(id))
		}
		note = fmt.Sprintf("tokenized alone, %q is %s (a lone ▁ first); after the prompt the model produces %d token(s), scored here", ans, strings.Join(ps, " | "), len(tail))
	}
	return tail, note, nil
}

// pieces returns the text the tokens ids decode to.
func pieces(v models.Vocab, ids []int32) []byte {
	var b []byte
	for _, id := range ids {
		b = append(b, v.Piece(id)...)
	}
	return b
}

// printables returns the printable forms of ids joined by " | ".
func printables(v models.Vocab, ids []int32) string {
	ps := make([]string, len(ids))
	for i, id := range ids {
		ps[i] = v.Printable(id)
	}
	return strings.Join(ps, " | ")
}

// ScoreAnswer scores the tokens after position n-1 of c's sequence (the
// answer tokens, each predicted from the prompt plus the earlier answer
// tokens) and returns them with the log-probability of them all.
func ScoreAnswer(v models.Vocab, c *models.Cache, n int) ([]AnswerScore, float64) {
	var out []AnswerScore
	total := 0.0
	for i := n; i < len(c.Tokens); i++ {
		lg := LogitsRow(c, i-1)
		id := c.Tokens[i]
		lp := lens.LogSoftmaxAt(lg, id)
		total += lp
		out = append(out, AnswerScore{ID: id, Piece: v.Printable(id), Rank: lens.Rank(lg, id), Logit: float64(lg[id]), Prob: math.Exp(lp)})
	}
	return out, total
}

// LogitsRow returns row pos of c's logits.
func LogitsRow(c *models.Cache, pos int) []float32 {
	a, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
	return a.Row(pos)
}
