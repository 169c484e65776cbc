package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// The tests in this file run the commands on the gemma3-tiny preset: 6
// layers (five with a sliding window of 8, one global), d_model 64 in 4
// heads of 32 (2 kv heads), per-head q/k norms, no soft-caps, tied, with
// Llama 2's vocabulary standing in for Gemma's. (Fewer than 6 layers would
// leave no global layer, on which llama.cpp aborts: the validator refuses
// such a file.)

func TestInspectGemma3(t *testing.T) {
	p := synthPreset(t, "gemma3-tiny", "F32", "gemma3")
	doc := runJSON[inspectJSON](t, "inspect", "--json", p)
	nodes := hookNodes(doc)
	if doc.Arch != "gemma3" || !doc.Tied || doc.Layers != 6 || doc.RunnableProblem != "" || len(doc.Hooks) != 8 ||
		nodes["resid_pre.L"] != "inp_scaled (L=0), l_out-(L-1)" || nodes["attn_out.L"] != "attn_post_norm-L" ||
		nodes["resid_mid.L"] != "sa_out-L" || nodes["mlp_out.L"] != "ffn_post_norm-L" {
		t.Errorf("inspect: %+v", doc)
	}
}

func TestCaptureGemma3(t *testing.T) {
	checkCaptureResiduals(t, synthPreset(t, "gemma3-tiny", "Q8_0", "gemma3"), 64, true)
}

func TestAnalysesGemma3(t *testing.T) {
	model := synthPreset(t, "gemma3-tiny", "F16", "gemma3")
	checkCompare(t, model, true, 6)
	checkPatch(t, model, true)
	checkContrastSteer(t, model, "gemma3", 3, 6)
}

// TestInspectRopeScaling checks that inspect says how a file scales RoPE:
// Gemma 3's linear factor (global layers only), Llama 3's per-frequency
// factors, and nothing for plain RoPE.
func TestInspectRopeScaling(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		spec models.SynthSpec
		want string
	}{
		{"gemma3-linear8", models.SynthSpec{Arch: "gemma3", NLayer: 6, DModel: 64, NHead: 4, NHeadKV: 2, HeadDim: 32, DFF: 128, NCtx: 128,
			SlidingWindow: 8, RopeScaleLinear: 8}, "linear scaling ×8 in the global layers (the sliding-window ones unscaled)"},
		{"llama-linear4", models.SynthSpec{NLayer: 1, DModel: 64, NHead: 4, DFF: 128, NCtx: 128, RopeScaleLinear: 4}, "linear scaling ×4"},
		{"llama3", models.SynthSpec{NLayer: 1, DModel: 64, NHead: 4, DFF: 128, NCtx: 128, Llama3Rope: true}, "per-frequency factors (rope_freqs.weight)"},
		{"plain", models.SynthSpec{NLayer: 1, DModel: 64, NHead: 4, DFF: 128, NCtx: 128}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".gguf")
			if err := models.WriteSynthetic(p, c.spec); err != nil {
				t.Fatal(err)
			}
			if doc := runJSON[inspectJSON](t, "inspect", "--json", p); doc.RopeScaling != c.want {
				t.Errorf("rope_scaling %q, want %q", doc.RopeScaling, c.want)
			}
			out, _, err := run(t, false, "inspect", p)
			if err != nil {
				t.Fatal(err)
			}
			if c.want != "" && !strings.Contains(out, "("+c.want+")") || c.want == "" && strings.Contains(out, "scaling") {
				t.Errorf("inspect says:\n%s\nwant the scaling %q", out, c.want)
			}
		})
	}
}

// TestSynthRopeScaleFlag checks that synth --rope-scale-linear writes the
// factor (inspect reads it back) and refuses a negative one and one for
// gpt2, which has no RoPE.
func TestSynthRopeScaleFlag(t *testing.T) {
	p := filepath.Join(t.TempDir(), "scaled.gguf")
	if _, stderr, err := run(t, false, "synth", "--preset", "tiny", "--rope-scale-linear", "4", "-o", p); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	if doc := runJSON[inspectJSON](t, "inspect", "--json", p); doc.RopeScaling != "linear scaling ×4" {
		t.Errorf("rope_scaling %q", doc.RopeScaling)
	}
	for _, c := range [][]string{
		{"--preset", "tiny", "--rope-scale-linear", "-2"},
		{"--preset", "gpt2-small", "--layers", "1", "--rope-scale-linear", "2"},
	} {
		_, _, err := run(t, false, append([]string{"synth", "-o", filepath.Join(t.TempDir(), "x.gguf")}, c...)...)
		if err == nil || !strings.Contains(err.Error(), "RoPE scaling") {
			t.Errorf("synth %v: %v", c, err)
		}
	}
}
