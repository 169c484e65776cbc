package llamacpp

import (
	"slices"
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
			// NUBatch 8: each group spans several ubatches; NBatch 12: and
			// batches of 12 tokens split into ubatches of 8 and 4
			for _, p := range []ContextParams{
				{NCtx: 256, NUBatch: 8, NSeqMax: 2, Threads: 1},
				{NCtx: 256, NBatch: 12, NUBatch: 8, NSeqMax: 2, Threads: 1},
			} {
				checkRunRows(t, m, p, seqs, pos, hooks)
			}
		})
	}
}

// checkRunRows compares RunRows with Run on a context of p, and checks that
// the recorder holds only the asked rows: one row per distinct asked
// position in every slot, whether its node has a row per token (the rows
// not asked for are never copied) or per output.
func checkRunRows(t *testing.T, m *Model, p ContextParams, seqs [][]int32, pos [][]int, hooks []models.Hook) {
	t.Helper()
	want := runOne(t, m, p, seqs, hooks)
	c, err := m.NewContext(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// the first two sequences decode as one group (NSeqMax 2)
	if _, err := c.RunRows(seqs[:2], pos[:2], hooks); err != nil {
		t.Fatal(err)
	}
	nOut := 0
	for _, ps := range pos[:2] {
		nOut += len(slices.Compact(slices.Sorted(slices.Values(ps))))
	}
	for i := range c.rec.Slots() {
		if w, data := c.rec.Rows(i); w == 0 || len(data) != nOut*w {
			t.Errorf("recorder slot %s holds %d values of width %d, want the %d asked rows", c.rec.Node(i), len(data), w, nOut)
		}
	}
	got, err := c.RunRows(seqs, pos, hooks)
	if err != nil {
		t.Fatal(err)
	}
	// without the Logits hook: no logits copied, the same rows
	noLogits := slices.DeleteFunc(slices.Clone(hooks), func(h models.Hook) bool { return h.Kind == models.Logits })
	bare, err := c.RunRows(seqs, pos, noLogits)
	if err != nil {
		t.Fatal(err)
	}
	for i := range seqs {
		if bare[i].Logits != nil {
			t.Errorf("seq %d: logits copied although no hook asked for them", i)
		}
		for _, h := range noLogits {
			if !slices.Equal(bare[i].Acts[h].Data, got[i].Acts[h].Data) {
				t.Errorf("seq %d %s: rows differ with and without the Logits hook", i, h.Short())
			}
		}
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
}

// TestUbatchStarts checks the ubatch split RunRows tells the recorder.
func TestUbatchStarts(t *testing.T) {
	for _, c := range []struct {
		n, batch, ubatch int
		want             []int
	}{
		{5, 512, 512, []int{0, 5}},
		{20, 512, 8, []int{0, 8, 16, 20}},
		{30, 12, 8, []int{0, 8, 12, 20, 24, 30}},
		{24, 12, 12, []int{0, 12, 24}},
	} {
		if got := ubatchStarts(c.n, c.batch, c.ubatch); !slices.Equal(got, c.want) {
			t.Errorf("ubatchStarts(%d, %d, %d) = %v, want %v", c.n, c.batch, c.ubatch, got, c.want)
		}
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
