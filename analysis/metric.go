package analysis

import (
	"math"

	"github.com/lldiff/lldiff/lens"
)

// PatchScore are the scores of one run.
type PatchScore struct {
	Metric        float64  `json:"metric"`
	LogitDiff     *float64 `json:"logit_diff,omitempty"`
	AnswerLogProb float64  `json:"answer_logprob"`
	AnswerProb    float64  `json:"answer_prob"`
}

// Metric scores a run from its logits at the metric positions (rows of
// nVocab logits): the metric of activation patching, a function as in
// TransformerLens's generic_activation_patch.
type Metric func(rows []float32, nVocab int) PatchScore

// AnswerMetric scores runs by the answer: the logit difference
// answer[0] − wrong at the first row when wrong >= 0, and otherwise the
// log-probability of the whole answer, token j read from row j (the last
// prompt position, then the answer tokens before the last). The answer's
// log-probability and probability are reported either way.
func AnswerMetric(answer []int32, wrong int32) Metric {
	return func(rows []float32, nVocab int) PatchScore {
		var s PatchScore
		for j, id := range answer {
			s.AnswerLogProb += lens.LogSoftmaxAt(rows[j*nVocab:(j+1)*nVocab], id)
		}
		s.AnswerProb = math.Exp(s.AnswerLogProb)
		s.Metric = s.AnswerLogProb
		if wrong >= 0 {
			ld := float64(rows[answer[0]]) - float64(rows[wrong])
			s.LogitDiff = &ld
			s.Metric = ld
		}
		return s
	}
}

// Normalized is (metric − corrupt) / (clean − corrupt): 0 for the corrupt
// run, 1 for the clean one.
func Normalized(metric, corrupt, clean float64) float64 {
	return (metric - corrupt) / (clean - corrupt)
}
