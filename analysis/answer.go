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
		// the answer merges with the prompt's last token: score it as
		// tokenized alone and say so
		note = fmt.Sprintf("%q merges with the end of the prompt when tokenized together; scored as tokenized alone", ans)
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
