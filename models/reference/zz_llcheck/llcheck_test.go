package llcheck

// TEMPORARY: compares the reference with llama.cpp's captures; deleted after use.

import (
	"testing"

	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

func TestAgainstLlamaCpp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kv     string
		tokens []int32
	}{
		{models.Stories260K, "f32", []int32{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421}},
		{models.Stories260K, "f16", []int32{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421}},
		{models.TinyStories656KF16, "f32", []int32{1, 147, 201, 282, 215, 286, 598, 1662, 356, 499, 826, 1363, 1145}},
		{models.TinyStories656KQ8, "f32", []int32{1, 147, 201, 282, 215, 286, 598, 1662, 356, 499, 826, 1363, 1145}},
	} {
		path, err := models.SharedModelPath(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := reference.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		rr, err := ref.Run(tc.tokens)
		if err != nil {
			t.Fatal(err)
		}
		m, err := llamacpp.LoadModel(path, llamacpp.ModelParams{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := m.NewContext(llamacpp.ContextParams{KVType: tc.kv, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		var hooks []models.Hook
		for _, n := range rr.Names() {
			h, err := models.ParseHook(n, ref.Config.NLayer)
			if err != nil {
				t.Fatal(err)
			}
			hooks = append(hooks, h...)
		}
		caches, err := c.Run([][]int32{tc.tokens}, llamacpp.RunOptions{Hooks: hooks})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range rr.Names() {
			a, err := caches[0].Get(n)
			if err != nil {
				t.Errorf("%s %s: %v", tc.name, n, err)
				continue
			}
			var rows [][]float32
			for i := 0; i < a.Rows(); i++ {
				rows = append(rows, a.Row(i))
			}
			want, _ := rr.Get(n)
			worst := 0.0
			for p := range want {
				if p < len(rows) && len(rows[p]) == len(want[p]) {
					worst = max(worst, reference.RelL2(rows[p], want[p]))
				}
			}
			t.Logf("%s kv=%s %-28s worst rel L2 %.3g", tc.name, tc.kv, n, worst)
			if err := reference.Compare(n, rows, want, 1e-4); err != nil {
				t.Logf("   %v", err)
			}
		}
		c.Close()
		m.Close()
	}
}
