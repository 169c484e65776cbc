package cli

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/benchmodels"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

func TestZZProbeContrast(t *testing.T) {
	if os.Getenv("PROBE") == "" {
		t.Skip()
	}
	path, _ := benchmodels.Synthetic("small", models.F16)
	m, err := llamacpp.LoadModel(path, llamacpp.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ds := benchPairs(32)
	cd := &analysis.ContrastData{Dataset: ds}
	for _, p := range ds.A {
		ids, _ := m.Tokenize(p.Text, llamacpp.TokenizeOptions{})
		cd.IDsA = append(cd.IDsA, ids)
		cd.RowsA = append(cd.RowsA, []int{len(ids) - 1})
	}
	for _, p := range ds.B {
		ids, _ := m.Tokenize(p.Text, llamacpp.TokenizeOptions{})
		cd.IDsB = append(cd.IDsB, ids)
		cd.RowsB = append(cd.RowsB, []int{len(ids) - 1})
	}
	var hooks []models.Hook
	for l := range m.NLayer() {
		hooks = append(hooks, models.Hook{Kind: models.ResidPost, Layer: l}, models.Hook{Kind: models.AttnOut, Layer: l}, models.Hook{Kind: models.MLPOut, Layer: l})
	}
	hooks = models.SortHooks(hooks)
	seqs, _, _ := cd.Seqs()
	n := llamacpp.GroupTokens(seqs, 8)
	mk := func(bare bool) *llamacpp.Context {
		c, err := m.NewContext(llamacpp.ContextParams{NCtx: (n + 255) / 256 * 256, NSeqMax: 8, NoCallback: bare})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	bare, cb := mk(true), mk(false)
	defer bare.Close()
	defer cb.Close()
	runs := map[string]func(){
		"bare": func() {
			for i := 0; i < len(seqs); i += 8 {
				bare.Run(seqs[i:min(i+8, len(seqs))], llamacpp.RunOptions{NoLogits: true})
			}
		},
		"barecb": func() {
			for i := 0; i < len(seqs); i += 8 {
				cb.Run(seqs[i:min(i+8, len(seqs))], llamacpp.RunOptions{NoLogits: true})
			}
		},
		"rows0": func() { analysis.CollectRows(cb, cd, nil, 8, nil) },
		"rows":  func() { analysis.CollectRows(cb, cd, hooks, 8, nil) },
	}
	order := []string{"bare", "barecb", "rows0", "rows"}
	ts := map[string][]float64{}
	for it := range 40 {
		for k := range order {
			name := order[(k+it)%len(order)]
			t0 := time.Now()
			runs[name]()
			ts[name] = append(ts[name], time.Since(t0).Seconds())
		}
	}
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	for _, name := range order {
		t.Logf("%s: median %.2f ms  ratio to bare %.3f", name, med(ts[name])*1000, med(ts[name])/med(ts["bare"]))
	}
}
