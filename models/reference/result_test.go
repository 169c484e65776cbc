package reference

import (
	"math"
	"strings"
	"testing"
)

func TestRelL2(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		name      string
		got, want []float32
		rel       float64
	}{
		{"equal", []float32{1, 2, 3}, []float32{1, 2, 3}, 0},
		{"3-4-5", []float32{3, 4}, []float32{0, 0.5}, math.Sqrt(9+12.25) / 0.5}, // ‖(3, 3.5)‖ / 0.5
		{"scaled", []float32{1.1, 2.2}, []float32{1, 2}, 0.1},
		{"both zero", []float32{0, 0}, []float32{0, 0}, 0},
		{"zero want", []float32{0, 1e-30}, []float32{0, 0}, math.Inf(1)},
		{"empty", nil, nil, 0},
		{"NaN got", []float32{nan, 1}, []float32{1, 1}, math.NaN()},
		{"NaN got, zero want", []float32{nan}, []float32{0}, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RelL2(tt.got, tt.want)
			switch {
			case math.IsNaN(tt.rel):
				if !math.IsNaN(got) {
					t.Errorf("RelL2 = %g, want NaN", got)
				}
			// float32 inputs such as 1.1 carry a relative rounding of 6e-8.
			case math.Abs(got-tt.rel) > 1e-6*tt.rel && got != tt.rel:
				t.Errorf("RelL2 = %g, want %g", got, tt.rel)
			}
		})
	}
}

func TestRelL2PanicsOnLengths(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for vectors of different lengths")
		}
	}()
	RelL2([]float32{1}, []float32{1, 2})
}

func TestCompare(t *testing.T) {
	want := [][]float32{{1, 0, 0}, {0, 2, 0}, {0, 0, 4}}
	tests := []struct {
		name    string
		got     [][]float32
		tol     float64
		wantErr []string // substrings; nil means no error
	}{
		{"equal", [][]float32{{1, 0, 0}, {0, 2, 0}, {0, 0, 4}}, 0, nil},
		{"within tolerance", [][]float32{{1, 0, 0}, {0, 2.00001, 0}, {0, 0, 4}}, 1e-4, nil},
		{"worst position named", [][]float32{{1.01, 0, 0}, {0, 2, 0}, {0, 0, 4.2}}, 1e-3,
			[]string{"logits:", "2 of 3 positions", "worst is position 2", "relative L2 0.05", "at [2]: got 4.2, want 4"}},
		{"NaN fails", [][]float32{{1, 0, 0}, {0, float32(math.NaN()), 0}, {0, 0, 4}}, 1,
			[]string{"1 of 3 positions", "worst is position 1", "got NaN"}},
		{"positions", [][]float32{{1, 0, 0}}, 1, []string{"1 positions, want 3"}},
		{"width", [][]float32{{1, 0, 0}, {0, 2}, {0, 0, 4}}, 1, []string{"position 1 has width 2, want 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Compare("logits", tt.got, want, tt.tol)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestResultCache(t *testing.T) {
	m := randomModel(smallConfig, 6)
	r := mustRun(t, m, []int32{3, 1, 4})
	c := r.Cache()
	for _, tt := range []struct{ short, full string }{
		{"resid_post.-1", "blocks.2.hook_resid_post"},
		{"z.0", "blocks.0.attn.hook_z"},
		{"ln_final", "ln_final.hook_normalized"},
		{"logits", "logits"},
	} {
		a, err := c.Get(tt.short)
		if err != nil {
			t.Fatal(err)
		}
		want := mustGet(t, r, tt.full)
		if a.Rows() != len(want) {
			t.Fatalf("%s: %d rows, want %d", tt.short, a.Rows(), len(want))
		}
		for p := range want {
			assertExact(t, tt.short, a.Row(p), want[p])
		}
	}
}
