package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// The patching prompts: stories260K says " she" after the clean prompt
// (p=0.57) and " he" after the corrupt one (p=0.52). Both have 17 tokens;
// "girl" and "boy" are three tokens each, at positions 10..12.
const (
	patchCleanText   = "Once upon a time, there was a little girl. One day,"
	patchCorruptText = "Once upon a time, there was a little boy. One day,"
)

// patchArgs returns the arguments of a patch run on stories260K with one
// thread (ggml's spinning threads slow a tiny model down on a busy machine).
func patchArgs(t *testing.T, extra ...string) []string {
	return append([]string{"patch", "-t", "1", "-m", testmodels.Path(t, testmodels.Stories260K),
		"--clean", patchCleanText, "--corrupt", patchCorruptText, "--answer", " she"}, extra...)
}

func patchJSON(t *testing.T, extra ...string) *PatchJSON {
	t.Helper()
	doc := runJSON[PatchJSON](t, patchArgs(t, append(extra, "--json")...)...)
	return &doc
}

// result returns the result of short name at corrupt position pos (-1: the
// one result of that hook).
func result(t *testing.T, doc *PatchJSON, short string, pos int) analysis.PatchedCell {
	t.Helper()
	for _, r := range doc.Results {
		if r.Short == short && (pos < 0 || len(r.Positions) == 1 && r.Positions[0].Corrupt == pos) {
			return r
		}
	}
	t.Fatalf("no result for %s at %d", short, pos)
	return analysis.PatchedCell{}
}

// TestPatchJSONGrid checks the per-position grid on stories260K: its
// shape, the normalisation's two fixed points, the positions where nothing
// can change, and that resid_pre of layer L+1 and resid_post of layer L
// (one activation) get one value.
func TestPatchJSONGrid(t *testing.T) {
	doc := patchJSON(t, "--wrong", " he")
	if doc.Metric != "logit_diff" || !strings.Contains(doc.MetricDesc, "▁she") || !strings.Contains(doc.MetricDesc, "▁he") {
		t.Errorf("metric %q (%s), want the logit difference ▁she − ▁he", doc.Metric, doc.MetricDesc)
	}
	n := len(doc.Corrupt.Tokens)
	if n != 17 || len(doc.Results) != 4*5*n {
		t.Fatalf("%d tokens, %d results; want 17 and 4 kinds × 5 layers × 17 positions", n, len(doc.Results))
	}
	// the clean prompt prefers " she", the corrupt one " he"
	if !(doc.Clean.Metric > 3 && doc.Corrupt.Metric < -3) || doc.Clean.LogitDiff == nil || *doc.Clean.LogitDiff != doc.Clean.Metric {
		t.Fatalf("clean %+v, corrupt %+v: want logit differences > 3 and < -3", doc.Clean, doc.Corrupt)
	}
	if math.Abs(doc.Clean.AnswerProb-0.5748) > 1e-3 || math.Abs(doc.Corrupt.AnswerProb-0.0105) > 1e-3 {
		t.Errorf("P(she): clean %.4f corrupt %.4f, want 0.5748 and 0.0105 (as compare reports)", doc.Clean.AnswerProb, doc.Corrupt.AnswerProb)
	}
	// resid_post of the last layer at the last position is the clean run
	// there: 1, within the fast path's 1e-5 relative logit error
	if r := result(t, doc, "resid_post.4", n-1); math.Abs(r.Normalized-1) > 1e-4 {
		t.Errorf("resid_post.4 at the last position: %.6f, want 1", r.Normalized)
	}
	for _, r := range doc.Results {
		q := r.Positions[0].Corrupt
		// before the first differing token the activations are equal: 0
		if q < 10 && r.Normalized != 0 {
			t.Errorf("%s at %d: %g, want exactly 0 (the clean and corrupt activations are equal there)", r.Short, q, r.Normalized)
		}
		if r.Kind == "resid_pre" && r.Layer > 0 {
			post := result(t, doc, fmt.Sprintf("resid_post.%d", r.Layer-1), q)
			if post.Normalized != r.Normalized {
				t.Errorf("%s at %d is %g but resid_post.%d is %g: they are one activation", r.Short, q, r.Normalized, r.Layer-1, post.Normalized)
			}
		}
		want := (r.Metric - doc.Corrupt.Metric) / (doc.Clean.Metric - doc.Corrupt.Metric)
		if math.Abs(r.Normalized-want) > 1e-12 {
			t.Errorf("%s at %d: normalized %g, want (metric − corrupt)/(clean − corrupt) = %g", r.Short, q, r.Normalized, want)
		}
	}
	// the answer is carried by the last "boy" token from layer 1 on
	if r := result(t, doc, "resid_post.2", 12); r.Normalized < 0.5 {
		t.Errorf("resid_post.2 at position 12: %.3f, want most of the effect (> 0.5)", r.Normalized)
	}
	if doc.Runs >= len(doc.Results) || doc.RunsPerSec <= 0 {
		t.Errorf("%d runs for %d results at %.1f runs/s: equal activations and resid_pre/resid_post should share runs", doc.Runs, len(doc.Results), doc.RunsPerSec)
	}
}

// TestPatchExact checks --exact, which decodes every patched run alone like
// a plain run: the clean embeddings at every position give the clean run
// and the clean last resid_post the clean logits, so both normalise to 1
// exactly.
func TestPatchExact(t *testing.T) {
	doc := patchJSON(t, "--wrong", " he", "--pos", "all", "--exact", "--kinds", "resid_pre,resid_post")
	if r := result(t, doc, "resid_pre.0", -1); r.Normalized != 1 || r.Metric != doc.Clean.Metric {
		t.Errorf("resid_pre.0 at every position: normalized %v metric %v, want exactly 1 and the clean metric %v", r.Normalized, r.Metric, doc.Clean.Metric)
	}
	if len(doc.Results) != 10 || len(doc.Results[0].Positions) != 17 {
		t.Fatalf("%d results of %d positions, want 2 kinds × 5 layers at all 17 positions", len(doc.Results), len(doc.Results[0].Positions))
	}
	last := patchJSON(t, "--wrong", " he", "--pos", "last", "--exact", "--kinds", "resid_post", "--layers", "-1")
	if len(last.Results) != 1 || last.Results[0].Normalized != 1 {
		t.Errorf("resid_post.4 at the last position with --exact: %+v, want exactly 1", last.Results)
	}
}

// TestPatchTableAndProb checks the terminal output: one layer × position
// table per kind with token pieces, and --prob tables.
func TestPatchTableAndProb(t *testing.T) {
	out, _, err := run(t, false, patchArgs(t, "--kinds", "attn_out", "--prob")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"metric: log P(▁she) after the prompt",
		"0 = corrupt run, 1 = clean run",
		"== attn_out: normalised metric (layer × position of the corrupt prompt) ==",
		"== attn_out: P(answer)",
		"layer\t0 <s>\t1 ▁Once",
		"12 y\t13 .",
		"tokens that differ (clean → corrupt): 10 ▁g → ▁b, 11 ir → o, 12 l → y",
		"runs/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// a header and five layer rows under each title
	lines := strings.Split(out, "\n")
	tables := 0
	for i, l := range lines {
		if !strings.HasPrefix(l, "== attn_out") {
			continue
		}
		tables++
		if i+6 >= len(lines) || !strings.HasPrefix(lines[i+1], "layer\t") {
			t.Fatalf("no table under %q", l)
		}
		for layer := range 5 {
			if row := lines[i+2+layer]; !strings.HasPrefix(row, fmt.Sprintf("%d\t", layer)) || strings.Count(row, "\t") != 17 {
				t.Errorf("row %d of %q is %q, want layer %d and 17 positions", layer, l, row, layer)
			}
		}
	}
	if tables != 2 {
		t.Errorf("%d attn_out tables, want the metric and the probability", tables)
	}
	tty, _, err := run(t, true, patchArgs(t, "--kinds", "mlp_out", "--pos", "all")...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tty, "│") || !strings.Contains(tty, "every position at once (layer × kind)") {
		t.Errorf("terminal output is not a boxed layer × kind table:\n%s", tty)
	}
}

// TestPatchPlot checks the heatmap files: a PNG of the size the layout
// gives (4 panels of 17 positions × 5 layers: (1.0+0.3+17×0.42+1.5) in ×
// (0.75 + 4×(0.35+1.5+5×0.32+0.2)) in at 96 dpi), and an SVG that names
// the kinds, the tokens and the colour scale.
func TestPatchPlot(t *testing.T) {
	dir := t.TempDir()
	pngPath := filepath.Join(dir, "grid.png")
	out, _, err := run(t, false, patchArgs(t, "--wrong", " he", "--plot", pngPath)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "wrote "+pngPath) {
		t.Errorf("output does not name the plot:\n%s", out)
	}
	b, err := os.ReadFile(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	inch := func(x float64) int { return int(x*96 + 0.5) }
	wantW, wantH := inch(1.0+0.3+17*0.42+1.5), inch(0.75+4*(0.35+1.5+5*0.32+0.2))
	if cfg.Width != wantW || cfg.Height != wantH {
		t.Errorf("PNG is %d×%d, want %d×%d", cfg.Width, cfg.Height, wantW, wantH)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// a picture, not a blank page: red cells (restored) are there
	red := 0
	for y := 0; y < cfg.Height; y += 2 {
		for x := 0; x < cfg.Width; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r > 0x9000 && g < 0x4000 && bl < 0x5000 {
				red++
			}
		}
	}
	if red < 100 {
		t.Errorf("%d red pixels: the heatmap shows no restored cells", red)
	}

	svgPath := filepath.Join(dir, "all.svg")
	if _, _, err := run(t, false, patchArgs(t, "--pos", "all", "--plot", svgPath)...); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	var svg struct {
		XMLName xml.Name `xml:"svg"`
		Width   string   `xml:"width,attr"`
		Height  string   `xml:"height,attr"`
	}
	if err := xml.Unmarshal(b, &svg); err != nil {
		t.Fatalf("not an SVG document: %v", err)
	}
	// one panel of 4 kinds: the minimum width 4 in, height
	// 0.75+0.35+0.8+5×0.32+0.2 in, in points
	if svg.Width != "396pt" || svg.Height != "266.4pt" {
		t.Errorf("SVG is %s × %s, want 396pt × 266.4pt", svg.Width, svg.Height)
	}
	for _, want := range []string{"Activation patching: stories260K.gguf", "every position at once", "resid_pre", "mlp_out", "layer", "1 clean", "0 corrupt", "normalised"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("SVG lacks the text %q", want)
		}
	}
}

// TestPatchFromCompare checks --top N --from-compare: N components, in
// compare's order by relative difference, with their patching ranks and a
// rank correlation.
func TestPatchFromCompare(t *testing.T) {
	doc := patchJSON(t, "--wrong", " he", "--from-compare", "--top", "6")
	fc := doc.FromCompare
	if fc == nil || len(fc.Components) != 6 || len(doc.Results) != 6 {
		t.Fatalf("from_compare %+v with %d results, want 6 components", fc, len(doc.Results))
	}
	seen := map[int]bool{}
	for i, c := range fc.Components {
		if c.CompareRank != i+1 || i > 0 && c.RelL2 > fc.Components[i-1].RelL2 {
			t.Errorf("component %d: compare rank %d rel %g: not in compare's order", i, c.CompareRank, c.RelL2)
		}
		if c.Normalized != doc.Results[i].Normalized || c.Hook != doc.Results[i].Hook {
			t.Errorf("component %d (%s) does not match result %s", i, c.Hook, doc.Results[i].Hook)
		}
		seen[c.PatchRank] = true
	}
	for r := 1; r <= 6; r++ {
		if !seen[r] {
			t.Errorf("patch ranks %v are not 1..6", fc.Components)
		}
	}
	if fc.Spearman == nil || *fc.Spearman < -1 || *fc.Spearman > 1 {
		t.Errorf("Spearman %v, want a value in [-1, 1]", fc.Spearman)
	}
	out, _, err := run(t, false, patchArgs(t, "--wrong", " he", "--from-compare", "--top", "3")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"compare #\thook\tpos\trel ‖clean−corrupt‖\tpatch effect\tpatch #", "Spearman rank correlation", "over 3 components"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestPatchUnequalLengths checks prompts of different token counts:
// position-wise patching is refused with the reason, last-position,
// whole-layer and explicit clean:corrupt pairs run.
func TestPatchUnequalLengths(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	// "Tom" is two tokens (▁T om), "Lily" one
	args := []string{"patch", "-t", "1", "-m", model, "--clean", "Lily went to the park. Lily said", "--corrupt", "Tom went to the park. Tom said", "--answer", " she", "--wrong", " he"}
	_, _, err := run(t, false, args...)
	if err == nil || ExitCode(err) != ExitUsage {
		t.Fatalf("--pos each on unequal lengths: error %v, want a usage error", err)
	}
	for _, want := range []string{"tokens", "not position i", "--pos last", "--pos all"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	for _, pos := range []string{"last", "all", "4:5,last"} {
		out, _, err := run(t, false, append(args, "--pos", pos, "--json")...)
		if err != nil {
			t.Fatalf("--pos %s: %v", pos, err)
		}
		var doc PatchJSON
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		nc, nk := len(doc.Clean.Tokens), len(doc.Corrupt.Tokens)
		if nc == nk {
			t.Fatalf("the prompts have %d tokens each; the test needs different counts", nc)
		}
		switch pos {
		case "last":
			p := doc.Results[0].Positions
			if len(p) != 1 || p[0].Clean != nc-1 || p[0].Corrupt != nk-1 {
				t.Errorf("--pos last patched %v, want %d:%d", p, nc-1, nk-1)
			}
		case "all":
			p := doc.Results[0].Positions
			// BOS to BOS, and the last token to the last token
			if p[0] != (analysis.PatchPos{Clean: 0, Corrupt: 0}) || p[len(p)-1] != (analysis.PatchPos{Clean: nc - 1, Corrupt: nk - 1}) || len(doc.Notes) == 0 {
				t.Errorf("--pos all patched %v (notes %v), want 0:0 … %d:%d and a note", p, doc.Notes, nc-1, nk-1)
			}
			// resid_post of the last layer at every aligned position
			// includes the last one: the clean logits, 1
			if r := result(t, &doc, "resid_post.4", -1); math.Abs(r.Normalized-1) > 1e-4 {
				t.Errorf("resid_post.4 at every position: %g, want 1", r.Normalized)
			}
		case "4:5,last":
			if len(doc.Results) != 4*5*2 {
				t.Errorf("%d results, want 4 kinds × 5 layers × 2 positions", len(doc.Results))
			}
		}
	}
}

func TestPatchBadInputs(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	base := []string{"patch", "-m", model, "--clean", patchCleanText, "--corrupt", patchCorruptText}
	with := func(extra ...string) []string { return append(append([]string(nil), base...), extra...) }
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
		want  []string
	}{
		{"no answer", with(), true, []string{"--answer"}},
		{"no clean", []string{"patch", "-m", model, "--corrupt", "x", "--answer", " a"}, true, []string{"--clean"}},
		{"no corrupt", []string{"patch", "-m", model, "--clean", "x", "--answer", " a"}, true, []string{"--corrupt"}},
		// a prompt of spaces is text with tokens; a file with no text is not
		{"empty prompt", []string{"patch", "-m", model, "--clean-file", writeFile(t, filepath.Join(t.TempDir(), "empty.txt"), "\n"), "--corrupt", "x", "--answer", " a"}, true, []string{"text"}},
		{"top 0", with("--answer", " she", "--from-compare", "--top", "0"), true, []string{"--top 0"}},
		{"empty pos", with("--answer", " she", "--pos", ""), true, []string{"--pos is empty"}},
		{"pos -0", with("--answer", " she", "--pos", "-0"), true, []string{`"-0" is not a position`, "-1"}},
		{"no model", []string{"patch", "--clean", "a", "--corrupt", "b", "--answer", " a"}, true, []string{"-m"}},
		{"unknown kind", with("--answer", " she", "--kinds", "resid_post,attn_outt"), true, []string{"attn_outt", "attn_out"}},
		{"kind with layer", with("--answer", " she", "--kinds", "resid_post.3"), true, []string{"resid_post.3", "--layers"}},
		{"logits kind", with("--answer", " she", "--kinds", "logits"), true, []string{"logits"}},
		{"layer out of range", with("--answer", " she", "--layers", "0,5"), true, []string{"out of range", "5 layers"}},
		{"negative layer out of range", with("--answer", " she", "--layers", "-6"), true, []string{"out of range"}},
		{"bad layer", with("--answer", " she", "--layers", "two"), true, []string{"two"}},
		{"bad position", with("--answer", " she", "--pos", "40"), true, []string{"40"}},
		{"plot type", with("--answer", " she", "--plot", "x.jpg"), true, []string{".png", ".svg"}},
		{"top without compare", with("--answer", " she", "--top", "3"), true, []string{"--from-compare"}},
		{"answer is wrong", with("--answer", " she", "--wrong", " she"), true, []string{"both", "0"}},
		{"same first token", with("--answer", " she", "--wrong", " she was"), true, []string{"same token", "▁she"}},
		{"nothing to restore", []string{"patch", "-t", "1", "-m", model, "--clean", patchCleanText, "--corrupt", patchCleanText, "--answer", " she"}, false, []string{"no difference", "compare"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, false, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if (ExitCode(err) == ExitUsage) != tc.usage {
				t.Errorf("exit code %d for %v", ExitCode(err), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
