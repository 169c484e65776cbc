package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// The helpers in this file run every analysis command on a small synthetic
// model of one architecture (issue 16: capture, compare, patch, contrast
// and steer on each), with assertions that hold for any model: the
// residual identities, the lens at the last layer against the model's own
// prediction, patching fixed points, and a control vector that moves the
// next-token distribution more at a larger scale.

// synthPreset writes the model of a tiny preset with lldiff synth and its
// default vocabulary, and checks synth's summary line.
func synthPreset(t *testing.T, preset, typ, arch string, extra ...string) string {
	t.Helper()
	testmodels.Path(t, testmodels.VocabGPT2) // the default vocabularies must exist
	testmodels.Path(t, testmodels.VocabLlamaSPM)
	p := filepath.Join(t.TempDir(), preset+"-"+typ+".gguf")
	out, _, err := run(t, false, append([]string{"synth", "-o", p, "--preset", preset, "--type", typ, "--ctx", "96"}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+p+": "+arch+", ") {
		t.Errorf("synth printed %q", out)
	}
	return p
}

// checkCaptureResiduals captures every hook of a model and checks, in its
// first 2 layers,
// resid_mid = resid_pre + attn_out and resid_post = resid_mid + mlp_out,
// exactly in float32 (llama.cpp adds the two in float32, as TransformerLens
// defines the hooks), and that attn_out and mlp_out are not zero.
//
// Without a resid_mid hook (residMid false) it checks resid_post =
// (resid_pre + attn_out) + mlp_out, the same float32 sums in the same order.
func checkCaptureResiduals(t *testing.T, model string, d int, residMid bool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "acts")
	hooks := "resid_pre,z,attn_out,mlp_out,resid_post,ln_final,logits"
	if residMid {
		hooks += ",resid_mid"
	}
	if _, _, err := run(t, false, "capture", "-t", "1", "-m", model, "--hooks", hooks,
		"-o", dir, "The quick brown fox jumps over the lazy dog"); err != nil {
		t.Fatal(err)
	}
	for l := range 2 {
		b := fmt.Sprintf("blocks.%d", l)
		shape, pre := readNpy(t, dir, b+".hook_resid_pre")
		_, attn := readNpy(t, dir, b+".hook_attn_out")
		mid := make([]float32, len(pre))
		for i := range mid {
			mid[i] = pre[i] + attn[i]
		}
		if residMid {
			_, mid = readNpy(t, dir, b+".hook_resid_mid")
		}
		_, mlp := readNpy(t, dir, b+".hook_mlp_out")
		_, post := readNpy(t, dir, b+".hook_resid_post")
		if len(shape) != 2 || shape[1] != d || shape[0] < 2 {
			t.Fatalf("resid_pre.%d has shape %v, want [tokens %d]", l, shape, d)
		}
		for i := range post {
			if mid[i] != pre[i]+attn[i] {
				t.Fatalf("layer %d: resid_mid[%d] = %g, resid_pre + attn_out = %g", l, i, mid[i], pre[i]+attn[i])
			}
			if post[i] != mid[i]+mlp[i] {
				t.Fatalf("layer %d: resid_post[%d] = %g, resid_mid + mlp_out = %g", l, i, post[i], mid[i]+mlp[i])
			}
		}
		if diff.Norm(attn[:d]) == 0 || diff.Norm(mlp[:d]) == 0 {
			t.Errorf("layer %d: attn_out or mlp_out is zero", l)
		}
	}
}

// checkCompare runs compare with its default kinds: every kind at every
// layer is ranked, and the logit lens of the last layer's resid_post (the
// final norm, and the final soft-capping where the model has one) is the
// model's own prediction.
func checkCompare(t *testing.T, model string, residMid bool, layers int) *CompareJSON {
	t.Helper()
	doc := runJSON[CompareJSON](t, "compare", "--json", "-t", "1", "-m", model, "--answer", " she", "The girl said that", "The boy said that")
	var kinds []string
	for _, c := range doc.Components {
		if !slices.Contains(kinds, c.Kind) {
			kinds = append(kinds, c.Kind)
		}
	}
	slices.Sort(kinds)
	want := []string{"attn_out", "mlp_out", "resid_post"}
	if residMid {
		want = []string{"attn_out", "mlp_out", "resid_mid", "resid_post"}
	}
	if !slices.Equal(kinds, want) || len(doc.Components) != layers*len(want) {
		t.Errorf("ranked kinds %v (%d components), want %v at %d layers", kinds, len(doc.Components), want, layers)
	}
	last := doc.Lens[len(doc.Lens)-1]
	if len(doc.Lens) != layers || last.A[0].ID != doc.Prompts[0].Top[0].ID || last.B[0].ID != doc.Prompts[1].Top[0].ID {
		t.Errorf("lens of the last layer: A %v, B %v; the model predicts %v and %v",
			last.A[0], last.B[0], doc.Prompts[0].Top[0], doc.Prompts[1].Top[0])
	}
	text, _, err := run(t, false, "compare", "-t", "1", "-m", model, "The girl said that", "The boy said that")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "warning:") || strings.Contains(text, "no resid_mid hooks") == residMid || !strings.Contains(text, "attn_out") {
		t.Errorf("compare output:\n%s", text)
	}
	return &doc
}

// checkPatch runs patch with --exact at its two fixed points: the clean
// resid_pre of layer 0 at every position is the clean run, and the clean
// resid_post of the last layer at the last position gives the clean
// logits; both normalise to exactly 1. The default grid covers every kind
// the architecture has.
func checkPatch(t *testing.T, model string, residMid bool) {
	t.Helper()
	args := []string{"patch", "--json", "-t", "1", "-m", model, "--clean", "The girl said that", "--corrupt", "The boy said that",
		"--answer", " she", "--wrong", " he"}
	pd := runJSON[PatchJSON](t, args...)
	if len(pd.Results) == 0 || pd.Runs == 0 || !residMid && slices.Contains(pd.Kinds, "resid_mid") ||
		!slices.Contains(pd.Kinds, "attn_out") || !slices.Contains(pd.Kinds, "mlp_out") {
		t.Errorf("patch: %d results, %d runs, kinds %v", len(pd.Results), pd.Runs, pd.Kinds)
	}
	if pd.Clean.Metric == pd.Corrupt.Metric {
		t.Fatalf("clean and corrupt metrics are equal (%g): nothing to patch", pd.Clean.Metric)
	}
	ex := runJSON[PatchJSON](t, append(args, "--exact", "--pos", "all", "--kinds", "resid_pre", "--layers", "0")...)
	if len(ex.Results) != 1 || ex.Results[0].Normalized != 1 {
		t.Errorf("resid_pre.0 at every position with --exact: %+v, want exactly 1", ex.Results)
	}
	ex = runJSON[PatchJSON](t, append(args, "--exact", "--pos", "last", "--kinds", "resid_post", "--layers", "-1")...)
	if len(ex.Results) != 1 || ex.Results[0].Normalized != 1 {
		t.Errorf("resid_post of the last layer at the last position with --exact: %+v, want exactly 1", ex.Results)
	}
}

// checkContrastSteer runs contrast (default kinds: resid_post, attn_out,
// mlp_out; kinds says how many) on a small paired dataset, exports its
// control vector and steers with it: the vector is applied at every layer
// it has, and the next-token distribution moves more at scale 8 than at
// scale 1 (KL from scale 0).
func checkContrastSteer(t *testing.T, model, arch string, kinds, layers int) {
	t.Helper()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	if err := os.WriteFile(a, []byte("I love this film\nWhat a great day\nThe food was wonderful\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("I hate this film\nWhat a terrible day\nThe food was awful\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cvec := filepath.Join(dir, "v.gguf")
	cd := runJSON[ContrastJSON](t, "contrast", "--json", "-t", "1", "-m", model, "--a", a, "--b", b, "--paired", "--export-cvec", cvec)
	if cd.Arch != arch || len(cd.Components) != layers*kinds {
		t.Errorf("contrast: arch %q, %d components (want %d kinds at %d layers)", cd.Arch, len(cd.Components), kinds, layers)
	}
	sd := runJSON[SteerJSON](t, "steer", "--json", "-t", "1", "-m", model, "--cvec", cvec, "--scale", "1,8", "-n", "4", "The movie was")
	if len(sd.Scales) != 2 || len(sd.Cvec.Layers) == 0 || sd.Baseline.KL != 0 {
		t.Fatalf("steer: %d scales, layers %v, baseline KL %g", len(sd.Scales), sd.Cvec.Layers, sd.Baseline.KL)
	}
	if k1, k8 := sd.Scales[0].KL, sd.Scales[1].KL; !(k1 > 0) || !(k8 > k1) {
		t.Errorf("KL from scale 0: %g at 1, %g at 8; want positive and increasing", k1, k8)
	}
}
