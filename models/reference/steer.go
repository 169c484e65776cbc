package reference

import (
	"fmt"

	"github.com/lldiff/lldiff/models"
)

// Steering: control vectors and greedy generation on the reference, so
// that analysis.Steer runs without llama.cpp. The definitions are
// llama.cpp's (llama-graph.cpp build_cvec, common's greedy sampling); the
// reference recomputes every position at each step instead of keeping a
// KV cache.

var _ models.Generator = (*runner)(nil)

// eogTokens returns the end-of-generation tokens the file names: EOS and,
// when set, EOT and EOM. llama.cpp also recognises some tokens by their
// text (<|im_end|>, ...); the reference does not.
func eogTokens(f *models.File, info *models.Info) map[int32]bool {
	eog := map[int32]bool{}
	if info.EOS >= 0 {
		eog[int32(info.EOS)] = true
	}
	for _, k := range []string{"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		if id, ok := f.Uint(k); ok && id < uint64(info.NVocab) {
			eog[int32(id)] = true
		}
	}
	return eog
}

// RunSteered is RunPatched with add[l] added, in float32, to every row of
// blocks.l.hook_resid_post as it is computed, before any later step reads
// it: llama.cpp's control vector, whose add node is l_out-l. A nil or
// missing add[l] adds nothing. Replacements apply after the addition.
func (m *Model) RunSteered(tokens []int32, reps []Replacement, add [][]float32) (*Result, error) {
	if len(add) > m.Config.NLayer {
		return nil, fmt.Errorf("reference: control vector for %d layers, the model has %d", len(add), m.Config.NLayer)
	}
	byName := map[string][]float32{}
	for l, v := range add {
		if v == nil {
			continue
		}
		if len(v) != m.Config.DModel {
			return nil, fmt.Errorf("reference: control vector for layer %d has %d values, d_model is %d", l, len(v), m.Config.DModel)
		}
		byName[fmt.Sprintf("blocks.%d.hook_resid_post", l)] = v
	}
	if len(byName) == 0 {
		return m.RunPatched(tokens, reps)
	}
	return m.runPatched(tokens, reps, func(name string, rows [][]float32) {
		if v := byName[name]; v != nil {
			for _, row := range rows {
				for i, x := range v {
					row[i] += x
				}
			}
		}
	})
}

// SetControlVector makes later runs add dirs[l] to resid_post.l (see
// models.Generator), with llama.cpp's rules: finite values, nothing at
// layer 0.
func (r *runner) SetControlVector(dirs [][]float32) error {
	layers, err := models.ControlVectorLayers(dirs, r.e.info.NLayer, r.e.info.DModel)
	if err != nil {
		return err
	}
	cv := make([][]float32, len(dirs))
	for _, l := range layers {
		cv[l] = append([]float32(nil), dirs[l]...)
	}
	r.cvec = cv
	return nil
}

// Generate runs prompt and appends the most likely token, rerunning the
// whole sequence for each (greedy; ties go to the lower id; NaN never
// wins), with the control vector set on r.
func (r *runner) Generate(prompt []int32, o models.GenerateOptions) (*models.Generation, error) {
	if o.N < 0 {
		return nil, fmt.Errorf("reference: Generate: N = %d", o.N)
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("reference: Generate: no prompt tokens")
	}
	if tr := r.e.info.NCtxTrain; r.e.info.LearnedPositions && len(prompt)+o.N > tr {
		return nil, &models.ContextError{Problem: models.PastLearnedPositions, Tokens: len(prompt) + o.N, Limit: tr, Path: r.e.path, Arch: r.e.info.Arch}
	}
	g := &models.Generation{Prompt: append([]int32(nil), prompt...)}
	seq := append([]int32(nil), prompt...)
	last := func() ([]float32, error) {
		c, err := r.run(seq, nil, nil)
		if err != nil {
			return nil, err
		}
		lg, _ := c.At(models.Hook{Kind: models.Logits, Layer: -1})
		return append([]float32(nil), lg.Row(len(seq)-1)...), nil
	}
	logits, err := last()
	if err != nil {
		return nil, err
	}
	g.First = logits
	for step := range o.N {
		next := argmax(logits)
		g.Tokens = append(g.Tokens, next)
		if o.KeepLogits {
			g.Logits = append(g.Logits, logits)
		}
		if (o.StopAtEOG && r.e.eog[next]) || step == o.N-1 {
			break
		}
		seq = append(seq, next)
		if logits, err = last(); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// argmax returns the index of the largest value, the lowest on ties; NaN
// never wins (llamacpp's argmax).
func argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] || v[best] != v[best] {
			best = i
		}
	}
	return int32(best)
}
