package reference

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// writeLNModel writes a small synthetic gpt2 or gptneox model with the
// architecture's real vocabulary and loads it.
func writeLNModel(t *testing.T, arch string, edit func(s *models.SynthSpec)) (*Model, string) {
	t.Helper()
	s := models.SynthSpec{Arch: arch, NLayer: 2, DModel: 32, NHead: 4, DFF: 64, NCtx: 64, Seed: 5, Type: models.F32,
		VocabPath: testmodels.Path(t, models.SynthVocab(arch))}
	if edit != nil {
		edit(&s)
	}
	p := filepath.Join(t.TempDir(), arch+".gguf")
	if err := models.WriteSynthetic(p, s); err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, p), p
}

func TestGeluGGML(t *testing.T) {
	// gelu_tanh(1) = 0.841192; the half-precision numbers nearest it are
	// 1723/2048 = 0.84130859375 and 1722/2048: ggml's table holds the first.
	if g := geluGGML(1); g != 0.84130859375 {
		t.Errorf("geluGGML(1) = %.10g, want 0.84130859375", g)
	}
	if g := geluTanh(1); math.Abs(float64(g)-0.8411919906) > 1e-6 {
		t.Errorf("geluTanh(1) = %.10g, want 0.8411919906", g)
	}
	for _, tc := range []struct{ x, want float32 }{{-10, 0}, {-20, 0}, {10, 10}, {12.5, 12.5}, {0, 0}} {
		if g := geluGGML(tc.x); g != tc.want {
			t.Errorf("geluGGML(%g) = %g, want %g", tc.x, g, tc.want)
		}
	}
	// Everywhere else the table differs from the float32 formula by the
	// two half-precision roundings: at most about 2^-11 of |x| (the input
	// rounding moves gelu by gelu'(x)·δx, gelu' < 1.13) plus 2^-11 of the
	// result.
	worst := 0.0
	for x := float32(-9.99); x < 10; x += 0.0137 {
		d := math.Abs(float64(geluGGML(x)) - float64(geluTanh(x)))
		b := (1.13*math.Abs(float64(x)) + math.Abs(float64(geluTanh(x)))) * math.Pow(2, -11)
		if d > b+1e-7 {
			t.Fatalf("geluGGML(%g) = %g, geluTanh %g: differ by %g, more than %g", x, geluGGML(x), geluTanh(x), d, b)
		}
		worst = max(worst, d)
	}
	t.Logf("largest difference between ggml's table and the formula: %.3g", worst)
}

func TestLayerNormByHand(t *testing.T) {
	// x = (1, 2, 3, 6): mean 3, deviations (-2, -1, 0, 3), variance 14/4.
	x := []float32{1, 2, 3, 6}
	gamma := []float32{1, 2, 1, 0.5}
	beta := []float32{0, 0.5, -1, 0}
	got := layerNorm(x, gamma, beta, 0.5)
	s := 1 / math.Sqrt(3.5+0.5)
	want := []float64{-2 * s, -1*s*2 + 0.5, -1, 3 * s * 0.5}
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-6 {
			t.Errorf("layerNorm[%d] = %g, want %g", i, got[i], want[i])
		}
	}
}

func TestRopeNeoxByHand(t *testing.T) {
	// Two heads of 6, the first 4 dimensions rotated: pairs (0, 2) and
	// (1, 3) turn by pos·base^0 and pos·base^(-1/2); 4 and 5 stay.
	v := []float32{1, 0, 0, 1, 7, 8, 1, 0, 0, 1, 7, 8}
	ropeNeox(v, 2, 6, 4, 100)
	t0, t1 := 2.0, 2.0/10
	want := []float64{math.Cos(t0), -math.Sin(t1), math.Sin(t0), math.Cos(t1), 7, 8}
	for h := 0; h < 2; h++ {
		for i, w := range want {
			if math.Abs(float64(v[h*6+i])-w) > 1e-6 {
				t.Errorf("head %d [%d] = %g, want %g", h, i, v[h*6+i], w)
			}
		}
	}
}

// TestLNRunStructure runs synthetic gpt2 and gptneox models and checks
// what holds by construction: the hooks computed, in order, with their
// widths; the residual identities in float32 as llama.cpp adds; gpt2's
// position embedding in resid_pre of layer 0; causality.
func TestLNRunStructure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		arch     string
		parallel bool
	}{{"gpt2", "gpt2", false}, {"pythia", "gptneox", true}, {"gptneox-sequential", "gptneox", false}} {
		t.Run(tc.name, func(t *testing.T) {
			m, path := writeLNModel(t, tc.arch, func(s *models.SynthSpec) { s.SequentialResidual = tc.arch == "gptneox" && !tc.parallel })
			if m.Config.ParallelResidual != tc.parallel || m.Config.Arch != tc.arch {
				t.Fatalf("config %+v", m.Config)
			}
			tokens := []int32{464, 2068, 7586, 21831, 18045, 625}
			r := mustRun(t, m, tokens)
			var want []string
			for l := 0; l < 2; l++ {
				want = append(want, hookName(l, "hook_resid_pre"), hookName(l, "attn.hook_z"), hookName(l, "hook_attn_out"))
				if !tc.parallel {
					want = append(want, hookName(l, "hook_resid_mid"))
				}
				want = append(want, hookName(l, "hook_mlp_out"), hookName(l, "hook_resid_post"))
			}
			want = append(want, "ln_final.hook_normalized", "logits")
			if !slices.Equal(r.Names(), want) {
				t.Fatalf("names %v\nwant  %v", r.Names(), want)
			}
			for l := 0; l < 2; l++ {
				pre, attn := mustGet(t, r, hookName(l, "hook_resid_pre")), mustGet(t, r, hookName(l, "hook_attn_out"))
				mlp, post := mustGet(t, r, hookName(l, "hook_mlp_out")), mustGet(t, r, hookName(l, "hook_resid_post"))
				for p := range tokens {
					for i := range pre[p] {
						var w float32
						if tc.parallel {
							w = (mlp[p][i] + pre[p][i]) + attn[p][i]
						} else {
							mid := mustGet(t, r, hookName(l, "hook_resid_mid"))
							if mid[p][i] != pre[p][i]+attn[p][i] {
								t.Fatalf("layer %d: resid_mid != resid_pre + attn_out at [%d][%d]", l, p, i)
							}
							w = mid[p][i] + mlp[p][i]
						}
						if post[p][i] != w {
							t.Fatalf("layer %d: resid_post[%d][%d] = %g, want %g", l, p, i, post[p][i], w)
						}
					}
				}
			}
			// resid_pre of layer 0 is the token's embedding (plus the
			// position's for gpt2).
			f, err := models.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			emb, _ := f.ReadTensorFloat32("token_embd.weight")
			var pos []float32
			if tc.arch == "gpt2" {
				pos, _ = f.ReadTensorFloat32("position_embd.weight")
			}
			pre := mustGet(t, r, "blocks.0.hook_resid_pre")
			for p, tok := range tokens {
				for i := range pre[p] {
					w := emb[int(tok)*32+i]
					if pos != nil {
						w += pos[p*32+i]
					}
					if pre[p][i] != w {
						t.Fatalf("resid_pre.0[%d][%d] = %g, want %g", p, i, pre[p][i], w)
					}
				}
			}
			// causal: a prefix computes the same rows
			short := mustRun(t, m, tokens[:3])
			for _, name := range short.Names() {
				a, b := mustGet(t, short, name), mustGet(t, r, name)
				for p := range a {
					if !slices.Equal(a[p], b[p]) {
						t.Fatalf("%s at position %d changes when later tokens are added", name, p)
					}
				}
			}
		})
	}
}

// TestLNPositions checks that position enters as the architecture says:
// for gpt2 the same token at two positions differs already in resid_pre;
// for gptneox resid_pre is the same and only the attention pattern (z)
// sees the position, through RoPE.
func TestLNPositions(t *testing.T) {
	for _, arch := range []string{"gpt2", "gptneox"} {
		m, _ := writeLNModel(t, arch, nil)
		r := mustRun(t, m, []int32{318, 318})
		pre := mustGet(t, r, "blocks.0.hook_resid_pre")
		if same := slices.Equal(pre[0], pre[1]); same != (arch == "gptneox") {
			t.Errorf("%s: resid_pre.0 of the same token at positions 0 and 1 equal: %v", arch, same)
		}
		// With one token repeated, attention over identical keys and values
		// averages identical rows: z at position 1 equals z at position 0
		// unless RoPE or the position embedding changes q, k or v. gptneox's
		// v is not rotated, so z is the same there too; its scores differ.
		z := mustGet(t, r, "blocks.0.attn.hook_z")
		if RelL2(z[1], z[0]) > 1e-6 != (arch == "gpt2") {
			t.Errorf("%s: z.0 of a repeated token differs by %.3g between positions", arch, RelL2(z[1], z[0]))
		}
	}
}

func TestLNRunPatched(t *testing.T) {
	// With the parallel residual, attn_out enters resid_post by addition
	// only: replacing attn_out at one position moves resid_post there by
	// the difference (up to float32 rounding) and changes nothing of the
	// same layer's MLP.
	m, _ := writeLNModel(t, "gptneox", nil)
	tokens := []int32{10, 20, 30, 40}
	base := mustRun(t, m, tokens)
	row := slices.Clone(mustGet(t, base, "blocks.0.hook_attn_out")[2])
	for i := range row {
		row[i] += 0.25
	}
	r, err := m.RunPatched(tokens, []Replacement{{Hook: "blocks.0.hook_attn_out", Pos: 2, Row: row}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mustGet(t, r, "blocks.0.hook_mlp_out")[2], mustGet(t, base, "blocks.0.hook_mlp_out")[2]) {
		t.Error("patching attn_out changed the same layer's mlp_out: the MLP must read resid_pre")
	}
	a, b := mustGet(t, r, "blocks.0.hook_resid_post")[2], mustGet(t, base, "blocks.0.hook_resid_post")[2]
	for i := range a {
		if d := a[i] - b[i]; math.Abs(float64(d)-0.25) > 1e-5 {
			t.Fatalf("resid_post[2][%d] moved by %g, want 0.25", i, d)
		}
	}
	if _, err := m.RunPatched(tokens, []Replacement{{Hook: "blocks.0.hook_resid_mid", Pos: 0, Row: row}}); err == nil ||
		!strings.Contains(err.Error(), "computes no hook") {
		t.Errorf("patching resid_mid of a parallel-residual model: %v", err)
	}
}

func TestLoadLNRefuses(t *testing.T) {
	m, path := writeLNModel(t, "gpt2", func(s *models.SynthSpec) { s.NCtx = 4 })
	if _, err := m.Run([]int32{1, 2, 3, 4, 5}); err == nil || !strings.Contains(err.Error(), "4 positions") {
		t.Errorf("5 tokens with 4 learned positions: %v", err)
	}
	f, err := models.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(kvs []models.KV) []models.KV
		want string
	}{
		{"no eps", func(kvs []models.KV) []models.KV { return delKV(kvs, "gpt2.attention.layer_norm_epsilon") }, "layer_norm_epsilon is missing"},
		{"no ctx", func(kvs []models.KV) []models.KV { return delKV(kvs, "gpt2.context_length") }, "context_length is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w models.Writer
			for _, kv := range tc.edit(slices.Clone(f.KVs)) {
				if err := w.AddKV(kv.Key, kv.Value); err != nil {
					t.Fatal(err)
				}
			}
			for _, ti := range f.Tensors {
				b, _ := f.ReadTensor(ti.Name)
				if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, b); err != nil {
					t.Fatal(err)
				}
			}
			p := filepath.Join(t.TempDir(), "m.gguf")
			if err := w.WriteFile(p); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load = %v, want %q", err, tc.want)
			}
		})
	}
}

func delKV(kvs []models.KV, key string) []models.KV {
	return slices.DeleteFunc(kvs, func(kv models.KV) bool { return kv.Key == key })
}
