package report_test

// Tests of the params and map views: Write with the documents the commands
// print, and the pages they draw in a headless Chromium.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/testmodels"
	lreport "github.com/lldiff/lldiff/report"
)

// paramsArgs reads two neurons and a head of stories260K's layer 2, and
// ranks them along a prompt pair (which fills every along field).
func paramsArgs(model string) []string {
	return []string{"params", "-m", model, "--layer", "2", "--neuron", "3,7", "--head", "1", "-k", "4", "--pairs", "3",
		"--along", "The girl ran. She|The boy ran. He", "--rank", "3"}
}

// mapArgs maps five prompts at resid_post.3, with an analogy and two
// differences.
func mapArgs(t *testing.T, model string) []string {
	t.Helper()
	prompts := filepath.Join(t.TempDir(), "p.tsv")
	text := "he1\tOnce upon a time, there was a boy. One day, he\nhe2\tThe boy went out. Then he\n" +
		"she1\tOnce upon a time, there was a girl. One day, she\nshe2\tThe girl went out. Then she\ncat\tThe [[cat]] sat.\n"
	if err := os.WriteFile(prompts, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"map", "-m", model, "--prompts", prompts, "--hook", "resid_post.3", "--analogy", "he1:she1::he2:?", "--diffs", "he1|she1", "he2|she2"}
}

// checkWrite writes the page of the document a command printed and checks
// that its data element holds that document, under its kind.
func checkWrite(t *testing.T, kind lreport.Kind, out string) {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decoding the --json output: %v", err)
	}
	var b bytes.Buffer
	if err := lreport.Write(&b, kind, doc); err != nil {
		t.Fatalf("Write(%s): %v", kind, err)
	}
	m := regexp.MustCompile(`<script id="lldiff-data" type="application/json" data-kind="([a-z]+)">`).FindStringSubmatchIndex(b.String())
	if m == nil {
		t.Fatal("no data element in the page")
	}
	if got := b.String()[m[2]:m[3]]; got != string(kind) {
		t.Errorf("data-kind %q, want %s", got, kind)
	}
	rest := b.String()[m[1]:]
	end := strings.Index(rest, "</script")
	var got any
	if end < 0 || json.Unmarshal([]byte(rest[:end]), &got) != nil {
		t.Fatal("the data element is not the JSON document")
	}
	if !reflect.DeepEqual(got, doc) {
		t.Errorf("the inlined %s document differs from the command's", kind)
	}
}

func TestWriteParamsDocument(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	checkWrite(t, lreport.KindParams, lldiff(t, append(paramsArgs(model), "--json")...))
}

func TestWriteMapDocument(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	checkWrite(t, lreport.KindMap, lldiff(t, append(mapArgs(t, model), "--json")...))
}

func TestParamsReport(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	var doc analysis.ParamsResult
	pageURL := report(t, &doc, paramsArgs(model)...)
	ctx, w := open(t, pageURL)
	if len(doc.Neurons) != 2 || len(doc.Heads) != 1 || doc.Along == nil || len(doc.Along.Neurons) == 0 {
		t.Fatalf("unexpected document: %d neurons, %d heads, along %v", len(doc.Neurons), len(doc.Heads), doc.Along)
	}
	norms := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#neurons-table td[data-col="write_norm"]')).map(td => td.dataset.value)`)
	if len(norms) != len(doc.Neurons) {
		t.Fatalf("%d neuron rows, want %d", len(norms), len(doc.Neurons))
	}
	for i, n := range doc.Neurons {
		if !sameFloat(norms[i], n.WriteNorm) {
			t.Errorf("neuron %d: ‖write‖ shows %q, want %v", n.Index, norms[i], n.WriteNorm)
		}
	}
	// the promoted tokens of the first neuron, in order
	pieces := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#neurons-table tbody tr:first-child td[data-col="write_top"] .lens-tok')).map(s => s.textContent)`)
	var want []string
	for _, tok := range doc.Neurons[0].Write.Top {
		want = append(want, tok.Piece)
	}
	if !reflect.DeepEqual(pieces, want) {
		t.Errorf("neuron %d promotes %q, want %q", doc.Neurons[0].Index, pieces, want)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#heads-table td[data-col="ov_top"] .lens-tok').length`); n != len(doc.Heads[0].OV.Top) {
		t.Errorf("%d OV pairs shown, want %d", n, len(doc.Heads[0].OV.Top))
	}
	cos := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#along-neurons td[data-col="cos"]')).map(td => td.dataset.value)`)
	if len(cos) != len(doc.Along.Neurons) {
		t.Fatalf("%d along rows, want %d", len(cos), len(doc.Along.Neurons))
	}
	for i, n := range doc.Along.Neurons {
		if !sameFloat(cos[i], n.Cos) {
			t.Errorf("along neuron %d: cos shows %q, want %v", n.Index, cos[i], n.Cos)
		}
	}
	noLeaks(t, w, pageURL)
}

func TestMapReport(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	var doc analysis.MapResult
	pageURL := report(t, &doc, mapArgs(t, model)...)
	ctx, w := open(t, pageURL)
	if len(doc.Hooks) != 1 || len(doc.Items) != 5 {
		t.Fatalf("unexpected document: %d hooks, %d items", len(doc.Hooks), len(doc.Items))
	}
	h := doc.Hooks[0]
	// one point per prompt, at its PCA coordinates, coloured by its cluster
	type pt struct {
		Key, X, Y, Fill string
	}
	pts := eval[[]pt](t, ctx, `Array.from(document.querySelectorAll("#pca-map circle.pt")).map(c => ({Key: c.dataset.key, X: c.dataset.x, Y: c.dataset.y, Fill: c.getAttribute("fill")}))`)
	if len(pts) != len(doc.Items) {
		t.Fatalf("%d points on the map, want %d", len(pts), len(doc.Items))
	}
	fillOf := map[int]string{}
	for i, p := range pts {
		if p.Key != doc.Items[i].Label || !sameFloat(p.X, h.PCA[i][0]) || !sameFloat(p.Y, h.PCA[i][1]) {
			t.Errorf("point %d: %+v, want %s at %v", i, p, doc.Items[i].Label, h.PCA[i])
		}
		// prompts share a colour exactly when they share a cluster
		c := h.Clusters[i]
		if f, ok := fillOf[c]; ok && f != p.Fill {
			t.Errorf("cluster %d drawn in %s and %s", c, f, p.Fill)
		}
		fillOf[c] = p.Fill
	}
	if len(uniqStrings(fillOf)) != len(fillOf) {
		t.Errorf("clusters share a colour: %v", fillOf)
	}
	// every cosine, keyed by its pair of prompts
	vals := eval[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll("#map-cosine rect.cell")).map(r => [r.dataset.key, r.dataset.value]))`)
	if len(vals) != len(doc.Items)*len(doc.Items) {
		t.Fatalf("%d matrix cells, want %d", len(vals), len(doc.Items)*len(doc.Items))
	}
	for i := range doc.Items {
		for j := range doc.Items {
			if got := vals[fmt.Sprintf("%d,%d", i, j)]; !sameFloat(got, h.Cosine[i][j]) {
				t.Errorf("cosine[%d][%d] shows %q, want %v", i, j, got, h.Cosine[i][j])
			}
		}
	}
	// the explained variance, as a percentage with one decimal
	pc1 := eval[string](t, ctx, `document.querySelector('#pca .fact[data-field="pc1"]').textContent`)
	if want := fmt.Sprintf("%.1f%%", 100*h.Explained[0]); !strings.Contains(pc1, want) {
		t.Errorf("PC1 fact %q lacks %s", pc1, want)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#diffs-matrix rect.cell").length`); doc.Diffs == nil || n != len(doc.Diffs.Layers) {
		t.Errorf("%d difference cells, want one per layer", n)
	}
	noLeaks(t, w, pageURL)
}

func uniqStrings(m map[int]string) map[string]bool {
	out := map[string]bool{}
	for _, v := range m {
		out[v] = true
	}
	return out
}
