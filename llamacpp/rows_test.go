package llamacpp

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestRunRowsMatchesRun checks RunRows against Run at the same positions,
// for every hook kind, including those llama.cpp computes for the output
// rows only (the last layer after its residual add, ln_final, logits), with
// several sequences per group and several ubatches per decode.
func TestRunRowsMatchesRun(t *testing.T) {
	for _, name := range []string{testmodels.Stories260K, testmodels.TinyStories656KQ8} {
		t.Run(name, func(t *testing.T) {
			m := loadShared(t, name)
			var seqs [][]int32
			for _, s := range []string{"Once upon a time, there was a girl", "The dog ran", "Tom and Sue played with a big red ball in the park"} {
				ids, err := m.Tokenize(s, TokenizeOptions{})
				if err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, ids)
			}
			pos := [][]int{
				{len(seqs[0]) - 1},
				{3, 0, len(seqs[1]) - 1, 3}, // unsorted, repeated
				{},
			}
			for p := range seqs[2] {
				pos[2] = append(pos[2], p) // every position
			}
			hooks := allHooks(m.NLayer())
			// NUBatch 8: each group spans several ubatches
			p := ContextParams{NCtx: 256, NUBatch: 8, NSeqMax: 2, Threads: 1}
			want := runOne(t, m, p, seqs, hooks)
			c, err := m.NewContext(p)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, err := c.RunRows(seqs, pos, hooks)
			if err != nil {
				t.Fatal(err)
			}
			for i := range seqs {
				for _, h := range hooks {
					a := got[i].Acts[h]
					w := get(t, want[i], h)
					if a == nil || a.Rows() != len(pos[i]) || a.Width != w.Width {
						t.Fatalf("seq %d %s: %v rows", i, h.Short(), a)
					}
					for k, q := range pos[i] {
						x := &models.Activation{Width: w.Width, Data: a.Row(k)}
						y := &models.Activation{Width: w.Width, Data: w.Row(q)}
						// Fewer output rows change the shapes of the last
						// layer's matrix products, and with them rounding:
						// agreement to float32 precision, not bits.
						if d := maxRelDiff(x, y); d > 1e-5 {
							t.Errorf("seq %d %s at position %d: relative difference %.3g from Run", i, h.Short(), q, d)
						}
					}
				}
				lg := get(t, want[i], models.Hook{Kind: models.Logits, Layer: -1})
				for k, q := range pos[i] {
					if d := maxAbsDiff(got[i].Logits.Row(k), lg.Row(q)); d > 1e-4 {
						t.Errorf("seq %d logits at %d differ by %.3g", i, q, d)
					}
				}
			}
		})
	}
}

func TestRunRowsErrors(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seq := [][]int32{{1, 300, 301}}
	for _, tc := range []struct {
		pos  [][]int
		want string
	}{
		{[][]int{{3}}, "outside"},
		{[][]int{{}}, "no positions"},
		{nil, "positions for 0 sequences"},
	} {
		_, err := c.RunRows(seq, tc.pos, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pos %v: err = %v, want %q", tc.pos, err, tc.want)
		}
	}
}
