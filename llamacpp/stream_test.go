package llamacpp

import (
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestStreamEqualsRun: a streamed capture hands out, ubatch by ubatch,
// exactly the rows Run returns for the whole sequence with the same ubatch
// size (the same graphs on the same numbers: equality, no tolerance), in
// position order, never more than one ubatch of rows at a time; an error
// from the receiver stops the stream and leaves the context usable.
func TestStreamEqualsRun(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	const ub = 16
	p := ContextParams{NCtx: 256, NUBatch: ub, Threads: 1}
	seq := make([]int32, 75) // 4 full ubatches and a partial one
	for i := range seq {
		seq[i] = int32(1 + (i*37)%(m.NVocab()-1))
	}
	var hooks []models.Hook
	for l := range m.NLayer() {
		for _, k := range []models.Kind{models.ResidPost, models.AttnOut, models.MLPOut} {
			hooks = append(hooks, models.Hook{Kind: k, Layer: l})
		}
	}
	hooks = append(hooks, models.Hook{Kind: models.Logits, Layer: -1})
	want := runOne(t, m, p, [][]int32{seq}, hooks)[0]

	c, err := m.NewContext(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([][]float32, len(hooks))
	next := make([]int, len(hooks)) // next position expected per hook
	err = c.Stream(seq, hooks, func(h, pos0, width int, rows []float32) error {
		if pos0 != next[h] {
			t.Fatalf("%s: rows from position %d, want %d", hooks[h].Name(), pos0, next[h])
		}
		n := len(rows) / width
		if n*width != len(rows) || n > ub {
			t.Fatalf("%s: %d values of width %d at once (ubatch %d)", hooks[h].Name(), len(rows), width, ub)
		}
		next[h] += n
		got[h] = append(got[h], rows...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hooks {
		a := get(t, want, h)
		if next[i] != len(seq) || !slices.Equal(got[i], a.Data) {
			diff := 0.0
			for k := range min(len(got[i]), len(a.Data)) {
				diff = max(diff, math.Abs(float64(got[i][k]-a.Data[k])))
			}
			t.Errorf("%s: streamed %d rows (%d values, max |Δ| %g), Run %d values", h.Name(), next[i], len(got[i]), diff, len(a.Data))
		}
	}

	// a receiver's error stops the stream at once and is returned
	stop := errors.New("disk full")
	calls := 0
	err = c.Stream(seq, hooks[:1], func(h, pos0, width int, rows []float32) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("receiver error: %v after %d calls, want %v after 1", err, calls, stop)
	}
	// and the context still streams from the start
	var first []float32
	if err := c.Stream(seq[:ub], hooks[:1], func(h, pos0, width int, rows []float32) error {
		first = append(first, rows...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if a := get(t, want, hooks[0]); !slices.Equal(first, a.Data[:ub*a.Width]) {
		t.Error("after a stopped stream, the next one differs from Run")
	}
}

// TestStreamUBatch: the ubatch size keeps one ubatch's rows within the
// budget, is llama.cpp's 512 for small captures and never 0.
func TestStreamUBatch(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	d, nv := int64(m.NEmbd()), int64(m.NVocab())
	hooks := allHooks(m.NLayer())
	if got := m.StreamUBatch(hooks, 0); got != 512 {
		t.Errorf("default budget, %d hooks of width %d: ubatch %d, want 512", len(hooks), d, got)
	}
	perTok := nv * 4
	for _, h := range hooks {
		if h.Kind != models.Logits {
			perTok += d * 4
		}
	}
	for _, budget := range []int64{perTok * 200, perTok * 64, perTok * 63, perTok * 3, 1} {
		got := int64(m.StreamUBatch(hooks, budget))
		switch {
		case got < 1 || got > 512:
			t.Errorf("budget %d: ubatch %d", budget, got)
		case got > 1 && got*perTok > budget:
			t.Errorf("budget %d: ubatch %d holds %d bytes of rows", budget, got, got*perTok)
		case got >= 64 && got%64 != 0:
			t.Errorf("budget %d: ubatch %d is not a multiple of 64", budget, got)
		case budget >= 64*perTok && got < budget/perTok-63:
			t.Errorf("budget %d: ubatch %d wastes the budget (%d would fit)", budget, got, budget/perTok)
		}
	}
}
