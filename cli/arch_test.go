package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// The tests in this file run the commands on small synthetic gpt2 and
// Pythia-shaped (gptneox, parallel residual) models written with the
// synth command: the real GPT-2 and GPT-NeoX vocabularies, 2 layers,
// d_model 64.

// synthArch writes a small model of a preset's architecture with lldiff
// synth and its default vocabulary for that architecture.
func synthArch(t *testing.T, preset, typ string) string {
	t.Helper()
	testmodels.Path(t, testmodels.VocabGPT2) // the default vocabularies must exist
	testmodels.Path(t, testmodels.VocabGPTNeoX)
	p := filepath.Join(t.TempDir(), preset+"-"+typ+".gguf")
	out, _, err := run(t, false, "synth", "-o", p, "--preset", preset, "--type", typ,
		"--layers", "2", "--d-model", "64", "--heads", "4", "--d-ff", "128", "--ctx", "96")
	if err != nil {
		t.Fatal(err)
	}
	arch := map[string]string{"gpt2-small": "gpt2", "pythia-70m": "gptneox"}[preset]
	if !strings.Contains(out, "wrote "+p+": "+arch+", 2 layers") {
		t.Errorf("synth printed %q", out)
	}
	return p
}

func TestSynthArchPresets(t *testing.T) {
	for _, tc := range []struct {
		preset, arch string
		vocab        int
		tied         bool
	}{
		{"gpt2-small", "gpt2", 50257, true},
		{"pythia-70m", "gptneox", 50432, false},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			p := synthArch(t, tc.preset, "F16")
			doc := runJSON[inspectJSON](t, "inspect", "--json", p)
			if doc.Arch != tc.arch || doc.Vocab != tc.vocab || doc.Tied != tc.tied || doc.Tokenizer != "gpt2" ||
				doc.Norm != "LayerNorm" || doc.RunnableProblem != "" || doc.Layers != 2 || doc.ContextTrain != 96 {
				t.Errorf("inspect: %+v", doc)
			}
		})
	}
}

// hookNodes returns inspect's hook → node table.
func hookNodes(doc inspectJSON) map[string]string {
	m := map[string]string{}
	for _, h := range doc.Hooks {
		m[h.Short] = h.Node
	}
	return m
}

func TestInspectArch(t *testing.T) {
	gpt2 := synthArch(t, "gpt2-small", "F32")
	pythia := synthArch(t, "pythia-70m", "F32")

	doc := runJSON[inspectJSON](t, "inspect", "--json", gpt2)
	nodes := hookNodes(doc)
	if len(doc.Hooks) != 8 || nodes["resid_pre.L"] != "inpL (L=0), l_out-(L-1)" ||
		nodes["attn_out.L"] != "unnamed (op ADD, reading blk.L.attn_output.bias)" || nodes["resid_mid.L"] != "ffn_inp-L" ||
		doc.Positions != "learned" || doc.Residual != "sequential" {
		t.Errorf("gpt2 inspect: %+v", doc)
	}

	doc = runJSON[inspectJSON](t, "inspect", "--json", pythia)
	nodes = hookNodes(doc)
	if _, ok := nodes["resid_mid.L"]; ok || len(doc.Hooks) != 7 || doc.Residual != "parallel" || doc.RopeDim != 4 ||
		nodes["mlp_out.L"] != "ffn_out-L (not reading ffn_out-L)" {
		t.Errorf("pythia inspect: %+v", doc)
	}
	if !slices.ContainsFunc(doc.Notes, func(n string) bool { return strings.Contains(n, "no resid_mid") && strings.Contains(n, "in parallel") }) {
		t.Errorf("pythia notes do not say why there is no resid_mid: %q", doc.Notes)
	}

	text, _, err := run(t, false, "inspect", pythia)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"architecture gptneox", "rope base 10000 on 4 of 16 head dims", "LayerNorm eps 1e-05",
		"parallel residual", "note: no resid_mid", "blocks.L.hook_mlp_out"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "hook_resid_mid") {
		t.Errorf("inspect lists resid_mid for Pythia:\n%s", text)
	}
}

// readNpy reads one captured activation.
func readNpy(t *testing.T, dir, hook string) ([]int, []float32) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, hook+".npy"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shape, data, err := npy.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return shape, data
}

// TestCaptureArch captures every hook of both architectures and checks the
// residual identities the hook tables promise: for gpt2 resid_mid =
// resid_pre + attn_out and resid_post = resid_mid + mlp_out; for Pythia
// resid_post = (mlp_out + resid_pre) + attn_out, llama.cpp's order of
// float32 additions, so exactly.
func TestCaptureArch(t *testing.T) {
	for _, tc := range []struct {
		preset string
		hooks  string
	}{
		{"gpt2-small", "resid_pre,z,attn_out,resid_mid,mlp_out,resid_post,ln_final,logits"},
		{"pythia-70m", "resid_pre,z,attn_out,mlp_out,resid_post,ln_final,logits"},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			model := synthArch(t, tc.preset, "Q8_0")
			dir := filepath.Join(t.TempDir(), "acts")
			if _, _, err := run(t, false, "capture", "-m", model, "--hooks", tc.hooks, "-o", dir, "The quick brown fox jumps over the lazy dog"); err != nil {
				t.Fatal(err)
			}
			shape, pre := readNpy(t, dir, "blocks.1.hook_resid_pre")
			_, attn := readNpy(t, dir, "blocks.1.hook_attn_out")
			_, mlp := readNpy(t, dir, "blocks.1.hook_mlp_out")
			_, post := readNpy(t, dir, "blocks.1.hook_resid_post")
			if shape[0] != 9 || shape[1] != 64 {
				t.Fatalf("resid_pre.1 has shape %v, want [9 64] (9 GPT-2 tokens, no BOS)", shape)
			}
			for i := range post {
				var want float32
				if tc.preset == "pythia-70m" {
					want = (mlp[i] + pre[i]) + attn[i]
				} else {
					_, mid := readNpy(t, dir, "blocks.1.hook_resid_mid")
					if mid[i] != pre[i]+attn[i] {
						t.Fatalf("resid_mid[%d] = %g, resid_pre + attn_out = %g", i, mid[i], pre[i]+attn[i])
					}
					want = mid[i] + mlp[i]
				}
				if post[i] != want {
					t.Fatalf("resid_post[%d] = %g, want %g", i, post[i], want)
				}
			}
			if diff.Norm(attn[:64]) == 0 || diff.Norm(mlp[:64]) == 0 {
				t.Error("attn_out or mlp_out is zero")
			}
		})
	}
}

func TestArchErrors(t *testing.T) {
	gpt2 := synthArch(t, "gpt2-small", "F32")
	pythia := synthArch(t, "pythia-70m", "F32")
	tmp := t.TempDir()

	// a BERT file: a gpt2 synthetic model relabelled
	f, err := models.Open(gpt2)
	if err != nil {
		t.Fatal(err)
	}
	w := &models.Writer{}
	for _, kv := range f.KVs {
		if kv.Key == "general.architecture" {
			kv.Value = "bert"
		}
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
	bert := filepath.Join(tmp, "bert.gguf")
	if err := w.WriteFile(bert); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("the cat sat on the mat ", 30) // 180 tokens, more than the 96 positions

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"resid_mid of Pythia", []string{"capture", "-m", pythia, "--hooks", "resid_mid.0", "-o", tmp + "/o1", "hi"},
			[]string{"no resid_mid", "parallel", "resid_pre + attn_out + mlp_out"}},
		{"compare --kinds resid_mid on Pythia", []string{"compare", "-m", pythia, "--kinds", "resid_mid", "a cat", "a dog"},
			[]string{"no resid_mid"}},
		{"bert", []string{"capture", "-m", bert, "-o", tmp + "/o2", "hi"},
			[]string{`"bert"`, "BERT", "llama, gpt2, gptneox"}},
		{"gpt2 past its positions", []string{"capture", "-m", gpt2, "-c", "512", "-o", tmp + "/o3", long},
			[]string{"learned position embeddings for 96 positions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestCompareArch runs compare with its default kinds: on Pythia the
// ranking leaves out resid_mid with a note, and the logit lens of the last
// layer's resid_post is the model's own prediction (through the final
// LayerNorm).
func TestCompareArch(t *testing.T) {
	for _, tc := range []struct {
		preset string
		kinds  []string
	}{
		{"gpt2-small", []string{"attn_out", "mlp_out", "resid_mid", "resid_post"}},
		{"pythia-70m", []string{"attn_out", "mlp_out", "resid_post"}},
	} {
		t.Run(tc.preset, func(t *testing.T) {
			model := synthArch(t, tc.preset, "F16")
			doc := runJSON[CompareJSON](t, "compare", "--json", "-m", model, "--answer", " she", "The girl said that", "The boy said that")
			var kinds []string
			for _, c := range doc.Components {
				if !slices.Contains(kinds, c.Kind) {
					kinds = append(kinds, c.Kind)
				}
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, tc.kinds) || len(doc.Components) != 2*len(tc.kinds) {
				t.Errorf("ranked kinds %v (%d components), want %v at 2 layers", kinds, len(doc.Components), tc.kinds)
			}
			noted := slices.ContainsFunc(doc.Warnings, func(w string) bool { return strings.Contains(w, "no resid_mid") })
			if noted != (tc.preset == "pythia-70m") {
				t.Errorf("warnings %q", doc.Warnings)
			}
			last := doc.Lens[len(doc.Lens)-1]
			if len(doc.Lens) != 2 || last.A[0].ID != doc.Prompts[0].Top[0].ID || last.B[0].ID != doc.Prompts[1].Top[0].ID {
				t.Errorf("lens of the last layer: A %v, B %v; the model predicts %v and %v",
					last.A[0], last.B[0], doc.Prompts[0].Top[0], doc.Prompts[1].Top[0])
			}

			text, _, err := run(t, false, "compare", "-m", model, "The girl said that", "The boy said that")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text, "through the final LayerNorm") || strings.Contains(text, "warning:") {
				t.Errorf("compare output:\n%s", text)
			}
		})
	}
}

// TestPatchContrastArch runs patch and contrast on both architectures.
func TestPatchContrastArch(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	if err := os.WriteFile(a, []byte("I love this film\nWhat a great day\nThe food was wonderful\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("I hate this film\nWhat a terrible day\nThe food was awful\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, preset := range []string{"gpt2-small", "pythia-70m"} {
		t.Run(preset, func(t *testing.T) {
			model := synthArch(t, preset, "F32")
			pd := runJSON[PatchJSON](t, "patch", "--json", "-m", model, "--clean", "The girl said that", "--corrupt", "The boy said that",
				"--answer", " she", "--wrong", " he")
			if len(pd.Results) == 0 || pd.Runs == 0 || slices.Contains(pd.Kinds, "resid_mid") {
				t.Errorf("patch: %d results, %d runs, kinds %v", len(pd.Results), pd.Runs, pd.Kinds)
			}
			cd := runJSON[ContrastJSON](t, "contrast", "--json", "-m", model, "--a", a, "--b", b, "--paired")
			if cd.Arch != map[string]string{"gpt2-small": "gpt2", "pythia-70m": "gptneox"}[preset] || len(cd.Components) != 6 {
				t.Errorf("contrast: arch %q, %d components (want 3 kinds at 2 layers)", cd.Arch, len(cd.Components))
			}
		})
	}
}
