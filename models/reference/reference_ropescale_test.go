package reference

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// TestRopeScaledByHand checks linear RoPE scaling against TestRopeByHand's
// hand-computed values: with freq_scale 1/8, position 8 turns every pair
// by the angle of plain RoPE at position 1 (8 · 0.125 is exactly 1, so the
// angles are the same float64 bits), for both pairings (NORM, NEOX).
func TestRopeScaledByHand(t *testing.T) {
	v := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	got := ropeScaled(slices.Clone(v), 8, 4, 10000, 0.125, nil)
	want := []float64{
		-1.1426396637476532, 1.922075596544176, 2.9598506679133294, 4.029799501669161,
		-2.3473143795066798, 7.449168759248321, 6.919651336243324, 8.069598836672489,
	}
	for i := range want {
		// one float32 rounding of the result: relative 6e-8
		if math.Abs(float64(got[i])-want[i]) > 1e-6*math.Abs(want[i]) {
			t.Errorf("rope scaled by 1/8 at position 8 [%d] = %.9g, want %.9g", i, got[i], want[i])
		}
	}
	assertExact(t, "rope scale 1/8 at 8 vs plain at 1", got, rope(slices.Clone(v), 1, 4, 10000))
	assertExact(t, "rope scale 1 is plain rope", ropeScaled(slices.Clone(v), 5, 4, 10000, 1, nil), rope(slices.Clone(v), 5, 4, 10000))
	// The factors of rope_freqs.weight and the scale multiply: factor 2
	// on pair 1 and scale 1/2 at position 4 turn pair 1 as plain RoPE at 1.
	f := ropeScaled(slices.Clone(v), 4, 4, 10000, 0.5, []float32{1, 2})
	at2, at1 := rope(slices.Clone(v), 2, 4, 10000), rope(slices.Clone(v), 1, 4, 10000)
	assertExact(t, "rope factors and scale", f, []float32{at2[0], at2[1], at1[2], at1[3], at2[4], at2[5], at1[6], at1[7]})

	n, n1 := slices.Clone(v), slices.Clone(v)
	ropeNeoxScaled(n, 8, 4, 4, 10000, 0.125)
	ropeNeox(n1, 1, 4, 4, 10000)
	assertExact(t, "NEOX rope scale 1/8 at 8 vs plain at 1", n, n1)
	if slices.Equal(n, v) {
		t.Fatal("NEOX rope at position 8 changed nothing")
	}
}

// TestLoadRopeScaling checks the freq_scale Load reads from the keys, as
// llama.cpp's load_hparams and llama_context compute it: 1/factor for
// linear scaling (the default type), from rope.scaling.factor or else the
// old rope.scale_linear; none for type "none" whatever the factor, and
// for factor 0 or 1.
func TestLoadRopeScaling(t *testing.T) {
	for _, tc := range []struct {
		name string
		kvs  []ggufKV
		want float64
	}{
		{"none", nil, 0},
		{"factor 4", []ggufKV{{"llama.rope.scaling.factor", float32(4)}}, 0.25},
		{"linear 8", []ggufKV{{"llama.rope.scaling.type", "linear"}, {"llama.rope.scaling.factor", float32(8)}}, 0.125},
		{"factor 3", []ggufKV{{"llama.rope.scaling.factor", float32(3)}}, float64(float32(1) / float32(3))},
		{"old key", []ggufKV{{"llama.rope.scale_linear", float32(2)}}, 0.5},
		{"factor before old key", []ggufKV{{"llama.rope.scaling.factor", float32(4)}, {"llama.rope.scale_linear", float32(2)}}, 0.25},
		{"type none", []ggufKV{{"llama.rope.scaling.type", "none"}, {"llama.rope.scaling.factor", float32(8)}}, 0},
		{"factor 0", []ggufKV{{"llama.rope.scaling.factor", float32(0)}}, 0},
		{"factor 1", []ggufKV{{"llama.rope.scaling.factor", float32(1)}}, 0},
		{"attn factor 1", []ggufKV{{"llama.rope.scaling.attn_factor", float32(1)}, {"llama.rope.scaling.factor", float32(2)}}, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kvs, ts := modelGGUF(t, eighthsModel(), models.F32, false)
			m := mustLoad(t, writeGGUF(t, append(kvs, tc.kvs...), ts))
			if m.Config.RopeFreqScale != tc.want {
				t.Errorf("RopeFreqScale = %v, want %v", m.Config.RopeFreqScale, tc.want)
			}
		})
	}
}

// TestRopeScalingPerLayer checks where each architecture applies linear
// scaling, on synthetic models written with and without factor 8:
//   - gemma3: only the global layer (5): layers 0 to 4 rotate with base
//     10000 unscaled and give the same bits, layer 5's z moves (except at
//     position 0, where every angle is 0);
//   - gemma2: every layer, the sliding-window layer 0 included;
//   - llama, qwen2, phi3 and gptneox: every layer, from layer 0.
func TestRopeScalingPerLayer(t *testing.T) {
	tokens := []int32{1, 450, 4996, 17354, 1701, 29916, 975, 263}
	for _, tc := range []struct {
		arch      string
		edit      func(s *models.SynthSpec)
		firstMove int // the first layer whose z the factor moves
	}{
		{"gemma3", func(s *models.SynthSpec) { s.NLayer, s.NHeadKV, s.HeadDim, s.SlidingWindow = 6, 2, 16, 4 }, 5},
		{"gemma2", func(s *models.SynthSpec) { s.NHeadKV, s.HeadDim, s.SlidingWindow = 2, 16, 4 }, 0},
		{"llama", nil, 0},
		{"qwen2", nil, 0},
		{"phi3", nil, 0},
		{"gptneox", nil, 0},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			scaled := func(factor float64) func(s *models.SynthSpec) {
				return func(s *models.SynthSpec) {
					if tc.edit != nil {
						tc.edit(s)
					}
					s.RopeScaleLinear = factor
				}
			}
			plain, _ := writeLNModel(t, tc.arch, scaled(0))
			m, _ := writeLNModel(t, tc.arch, scaled(8))
			if m.Config.RopeFreqScale != 0.125 || plain.Config.RopeFreqScale != 0 {
				t.Fatalf("RopeFreqScale %v (factor 8) and %v (none)", m.Config.RopeFreqScale, plain.Config.RopeFreqScale)
			}
			if tc.arch == "gemma3" && m.gemma.swaScale != 1 || tc.arch == "gemma2" && m.gemma.swaScale != 0.125 {
				t.Errorf("%s: sliding-window layers scale by %v", tc.arch, m.gemma.swaScale)
			}
			rs, rp := mustRun(t, m, tokens), mustRun(t, plain, tokens)
			for l := 0; l < m.Config.NLayer; l++ {
				name := fmt.Sprintf("blocks.%d.attn.hook_z", l)
				a, b := mustGet(t, rs, name), mustGet(t, rp, name)
				if l < tc.firstMove {
					if err := Compare(name, a, b, 0); err != nil {
						t.Errorf("an unscaled layer moved: %v", err)
					}
					continue
				}
				if e := RelL2(a[0], b[0]); e != 0 && l == tc.firstMove {
					t.Errorf("%s at position 0 moved by %.3g: every angle is 0 there", name, e)
				}
				if e := RelL2(a[len(a)-1], b[len(b)-1]); e < 1e-3 {
					t.Errorf("%s at position %d: the factor moved it by %.3g only", name, len(a)-1, e)
				}
			}
		})
	}
}
