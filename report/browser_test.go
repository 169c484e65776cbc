package report_test

// Browser tests: each command writes its --html report for stories260K,
// a headless Chromium opens it from disk, and the test reads the DOM back
// and checks it against the command's --json document. Without a Chromium
// on PATH they are skipped with one line saying so (internal/browsertest).

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/cli"
	"github.com/lldiff/lldiff/internal/browsertest"
	"github.com/lldiff/lldiff/internal/testmodels"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write docs/img/report-compare.png and docs/img/report-patch.png")

const (
	promptA = "Once upon a time, there was a little girl. One day,"
	promptB = "Once upon a time, there was a little boy. One day,"
)

// lldiff runs the command line in-process; it must succeed. It returns
// standard output.
func lldiff(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	io := &cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	root := cli.NewRootCmd(io)
	root.SetArgs(cli.NormalizeArgs(args))
	if err := root.Execute(); err != nil {
		t.Fatalf("lldiff %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// report runs a command with --json and --html and returns the page's
// file:// URL; the document is decoded into doc.
func report(t *testing.T, doc any, args ...string) string {
	t.Helper()
	page := filepath.Join(t.TempDir(), "report.html")
	out := lldiff(t, append(args, "--json", "--html", page)...)
	if err := json.Unmarshal([]byte(out), doc); err != nil {
		t.Fatalf("decoding the --json output: %v", err)
	}
	return "file://" + page
}

// open loads url in a fresh browser and waits for the views to be drawn.
func open(t *testing.T, url string) (context.Context, *browsertest.Watcher) {
	t.Helper()
	ctx := browsertest.New(t)
	w := browsertest.Watch(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v (browser errors: %v)", url, err, w.Errors())
	}
	// a page that failed to draw never sets data-rendered: give up early
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(`[data-rendered]`))); err != nil {
		t.Fatalf("drawing %s: %v (browser errors: %v)", url, err, w.Errors())
	}
	return ctx, w
}

// reload opens url (a hash included) anew in the same tab.
func reload(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS(`[data-rendered]`))); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

func click(t *testing.T, ctx context.Context, css string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.ScrollIntoView(chromedp.CSS(css)), chromedp.Click(chromedp.CSS(css))); err != nil {
		t.Fatalf("clicking %s: %v", css, err)
	}
}

// cell is a number as the page shows it: the full value (data-value) and
// the text a reader sees.
type cell struct {
	V    string `json:"v"`
	Text string `json:"text"`
}

// checkNumber checks that a cell holds want exactly (data-value) and shows
// it to the precision of its text: 4 significant digits for num(), or the
// decimals of a fixed format, so the text may differ from want by half a
// unit of its last digit.
func checkNumber(t *testing.T, what string, c cell, want float64) {
	t.Helper()
	v, err := strconv.ParseFloat(c.V, 64)
	if err != nil || v != want {
		t.Errorf("%s: data-value %q, want %v", what, c.V, want)
		return
	}
	text := strings.TrimSpace(strings.ReplaceAll(c.Text, "−", "-"))
	shown, err := strconv.ParseFloat(text, 64)
	if err != nil {
		t.Errorf("%s: shows %q, not a number", what, c.Text)
		return
	}
	tol := 5e-4 * math.Abs(want) // 4 significant digits
	if i := strings.IndexByte(text, '.'); i >= 0 && !strings.ContainsAny(text, "eE") {
		tol = math.Max(tol, 0.5*math.Pow(10, -float64(len(text)-i-1)))
	}
	if math.Abs(shown-want) > tol*(1+1e-9) {
		t.Errorf("%s: shows %q, want %v (±%g)", what, c.Text, want, tol)
	}
}

// noLeaks checks that the page made no request but its own file (each
// navigation of the test loads it again) and logged no error.
func noLeaks(t *testing.T, w *browsertest.Watcher, pageURL string) {
	t.Helper()
	w.CheckNoErrors(t)
	w.CheckOnlyRequests(t, pageURL, "about:blank")
}

func screenshot(t *testing.T, ctx context.Context, name string, width, height int64) {
	t.Helper()
	if !*updateScreenshots {
		return
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatal(err)
	}
	eval[bool](t, ctx, `window.scrollTo(0, 0), true`)
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(moduleRoot(t), "docs", "img", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func TestCompareReport(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	var doc analysis.CompareResult
	pageURL := report(t, &doc, "compare", "-m", model, "-t", "1", "--answer", " she", "--answer", " he", promptA, promptB)
	ctx, w := open(t, pageURL)

	// the summary, word for word
	if got := eval[string](t, ctx, `document.getElementById("summary-text").textContent`); got != doc.Summary.Text {
		t.Errorf("summary %q, want %q", got, doc.Summary.Text)
	}

	// every ranking row, in the document's order, with its numbers
	type row struct {
		Key   string          `json:"key"`
		Cells map[string]cell `json:"cells"`
	}
	rows := eval[[]row](t, ctx, `Array.from(document.querySelectorAll("#ranking-table tbody tr")).map(tr => ({key: tr.dataset.key,
		cells: Object.fromEntries(Array.from(tr.cells).map(td => [td.dataset.col, {v: td.dataset.value || "", text: td.textContent}]))}))`)
	if len(rows) != len(doc.Components) || len(rows) == 0 {
		t.Fatalf("%d ranking rows, want %d", len(rows), len(doc.Components))
	}
	for i, c := range doc.Components {
		r := rows[i]
		if r.Key != c.Hook {
			t.Errorf("ranking row %d is %s, want %s", i, r.Key, c.Hook)
			continue
		}
		for col, want := range map[string]float64{"norm_a": c.NormA, "l2": c.L2, "rel_l2": c.RelL2, "cosine": c.Cosine, "norm_b": c.NormB, "rank": float64(i + 1), "layer": float64(c.Layer)} {
			checkNumber(t, c.Hook+" "+col, r.Cells[col], want)
		}
	}

	// the predictions and their probabilities
	type pred struct {
		A cell `json:"a"`
		B cell `json:"b"`
	}
	preds := eval[[]pred](t, ctx, `Array.from(document.querySelectorAll("#predictions-table tbody tr")).map(tr => {
		const c = col => { const td = tr.querySelector('td[data-col="' + col + '"]'); return td ? {v: td.dataset.value, text: td.textContent} : {v: "", text: ""}; };
		return {a: c("prob_a"), b: c("prob_b")}; })`)
	if len(preds) != max(len(doc.Prompts[0].Top), len(doc.Prompts[1].Top)) {
		t.Fatalf("%d prediction rows, want %d", len(preds), len(doc.Prompts[0].Top))
	}
	for i, p := range doc.Prompts[0].Top {
		checkNumber(t, fmt.Sprintf("A prediction %d", i), preds[i].A, p.Prob)
	}
	for i, p := range doc.Prompts[1].Top {
		checkNumber(t, fmt.Sprintf("B prediction %d", i), preds[i].B, p.Prob)
	}

	// every component has its heatmap cell; the lens grid has every layer
	if n := eval[int](t, ctx, `document.querySelectorAll("#heatmap rect.cell[data-key]").length`); n != len(doc.Components) {
		t.Errorf("%d heatmap cells, want %d", n, len(doc.Components))
	}
	lens := eval[[]cell](t, ctx, `Array.from(document.querySelectorAll('#lens-grid .lens-cell[data-col="a_minus_b"] .lens-tok:first-child')).map(s => ({v: s.dataset.value, text: s.textContent}))`)
	var wantLens []analysis.LensToken
	for _, l := range doc.Lens {
		if len(l.AMinusB) > 0 {
			wantLens = append(wantLens, l.AMinusB[0])
		}
	}
	if len(lens) != len(wantLens) {
		t.Errorf("%d A−B lens cells with tokens, want %d", len(lens), len(wantLens))
	} else {
		for i, tok := range wantLens {
			if lens[i].Text != tok.Piece || !sameFloat(lens[i].V, tok.Value) {
				t.Errorf("lens A−B %d: %q %s, want %q %v", i, lens[i].Text, lens[i].V, tok.Piece, tok.Value)
			}
		}
	}
	if got := eval[string](t, ctx, `document.getElementById("lens-note").textContent`); !strings.Contains(got, "Lens normalisation: "+doc.LensNorm) {
		t.Errorf("lens note %q does not name the normalisation %q", got, doc.LensNorm)
	}

	// the neurons of the selected component (the default selection is the
	// component the neurons were recorded for)
	if doc.Neurons == nil || len(doc.Neurons.Neurons) == 0 {
		t.Fatal("the demo pair has no neurons")
	}
	diffs := eval[[]cell](t, ctx, `Array.from(document.querySelectorAll("#neurons-table tbody tr")).map(tr => ({v: tr.cells[2].dataset.value, text: tr.cells[2].textContent}))`)
	if len(diffs) != len(doc.Neurons.Neurons) {
		t.Fatalf("%d neuron rows, want %d", len(diffs), len(doc.Neurons.Neurons))
	}
	for i, n := range doc.Neurons.Neurons {
		checkNumber(t, fmt.Sprintf("neuron %d A−B", n.Index), diffs[i], n.Diff)
	}

	// click the heatmap cell of the least different component: the detail
	// shows it, and the hash records it
	pick := doc.Components[len(doc.Components)-1]
	click(t, ctx, fmt.Sprintf(`#heatmap rect.cell[data-key=%q]`, pick.Hook))
	if got := eval[string](t, ctx, `document.getElementById("detail-hook").textContent`); got != pick.Hook {
		t.Errorf("after clicking %s the detail shows %q", pick.Hook, got)
	}
	rel := eval[cell](t, ctx, `(() => { const d = document.querySelector('#detail dd[data-field="rel_l2"]'); return {v: d.dataset.value, text: d.textContent}; })()`)
	checkNumber(t, "detail rel_l2", rel, pick.RelL2)
	if sel := eval[string](t, ctx, `document.querySelector("#ranking-table tr.selected").dataset.key`); sel != pick.Hook {
		t.Errorf("the ranking selects %s, want %s", sel, pick.Hook)
	}
	hash := eval[string](t, ctx, `location.hash`)
	if !strings.Contains(hash, "sel="+url.QueryEscape(pick.Hook)) {
		t.Errorf("hash %q does not record the selection %s", hash, pick.Hook)
	}

	// the hash reopens the same view: selection, and a sort by ‖A−B‖,
	// smallest first
	other := doc.Components[1]
	reload(t, ctx, pageURL+"#rdir=asc&rsort=l2&sel="+url.QueryEscape(other.Hook))
	if got := eval[string](t, ctx, `document.getElementById("detail-hook").textContent`); got != other.Hook {
		t.Errorf("reopened with sel=%s, the detail shows %q", other.Hook, got)
	}
	l2s := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#ranking-table tbody td[data-col="l2"]')).map(td => td.dataset.value)`)
	for i := 1; i < len(l2s); i++ {
		a, _ := strconv.ParseFloat(l2s[i-1], 64)
		b, _ := strconv.ParseFloat(l2s[i], 64)
		if a > b {
			t.Fatalf("rsort=l2&rdir=asc: row %d (%v) before row %d (%v)", i-1, a, i, b)
		}
	}

	// the keyboard selects too: Tab to a row (here: focus it), Enter
	third := eval[string](t, ctx, `document.querySelector("#ranking-table tbody tr:nth-child(3)").dataset.key`)
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("#ranking-table tbody tr:nth-child(3)")), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	if got := eval[string](t, ctx, `document.getElementById("detail-hook").textContent`); got != third {
		t.Errorf("Enter on the row of %s: the detail shows %q", third, got)
	}

	// the filter keeps the matching rows only, and goes into the hash
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#ranking input.filter"), "attn_out")); err != nil {
		t.Fatal(err)
	}
	kinds := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#ranking-table tbody td[data-col="kind"]')).map(td => td.textContent)`)
	wantN := 0
	for _, c := range doc.Components {
		if c.Kind == "attn_out" {
			wantN++
		}
	}
	if len(kinds) != wantN {
		t.Errorf("filter attn_out: %d rows, want %d", len(kinds), wantN)
	}
	for _, k := range kinds {
		if k != "attn_out" {
			t.Errorf("filter attn_out kept a %s row", k)
		}
	}
	if hash := eval[string](t, ctx, `location.hash`); !strings.Contains(hash, "rq=attn_out") {
		t.Errorf("hash %q does not record the filter", hash)
	}

	// Download JSON hands the browser the document, as a blob: URL: record
	// the blob on its way and compare it with --json's document
	eval[bool](t, ctx, `(() => { const make = URL.createObjectURL; window.blobs = [];
		URL.createObjectURL = b => { window.blobs.push(b); return make.call(URL, b); }; return true; })()`)
	click(t, ctx, "#download-json")
	saved, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.blobs[0].text()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("reading the downloaded blob: %v", err)
	}
	var gotDoc, wantDoc any
	if err := json.Unmarshal([]byte(saved), &gotDoc); err != nil {
		t.Fatalf("the download is not JSON: %v", err)
	}
	raw, _ := json.Marshal(doc)
	json.Unmarshal(raw, &wantDoc)
	if !reflect.DeepEqual(gotDoc, wantDoc) {
		t.Error("the downloaded JSON differs from the --json document")
	}

	noLeaks(t, w, pageURL)
	if *updateScreenshots {
		reload(t, ctx, pageURL)
		screenshot(t, ctx, "report-compare.png", 1280, 1500)
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testmodels.ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func sameFloat(s string, want float64) bool {
	v, err := strconv.ParseFloat(s, 64)
	return err == nil && v == want
}

// TestHostilePrompt puts markup into a prompt: the page shows it as text
// and runs none of it.
func TestHostilePrompt(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	a := `Once upon a time</script><script>window.pwned = 1</script><!-- <img src=x onerror="window.pwned = 2">`
	var doc analysis.CompareResult
	pageURL := report(t, &doc, "compare", "-m", model, "-t", "1", a, promptB)
	ctx, w := open(t, pageURL)
	if pwned := eval[bool](t, ctx, `window.pwned !== undefined`); pwned {
		t.Error("the prompt's script ran")
	}
	if got := eval[string](t, ctx, `document.querySelector("#tokens .prompts .mono").textContent`); got != a {
		t.Errorf("prompt A shows as %q, want %q", got, a)
	}
	if got := eval[string](t, ctx, `document.getElementById("summary-text").textContent`); got != doc.Summary.Text {
		t.Errorf("summary %q, want %q", got, doc.Summary.Text)
	}
	noLeaks(t, w, pageURL)
}

func TestPatchReport(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	var doc analysis.PatchResult
	pageURL := report(t, &doc, "patch", "-m", model, "-t", "1", "--clean", promptA, "--corrupt", promptB, "--answer", " she", "--wrong", " he")
	ctx, w := open(t, pageURL)
	if got := eval[string](t, ctx, `document.getElementById("summary-text").textContent`); got != doc.Summary.Text {
		t.Errorf("summary %q, want %q", got, doc.Summary.Text)
	}
	// every patched cell is in its kind's map with its normalised effect
	type rect struct {
		Kind string `json:"kind"`
		Key  string `json:"key"`
		V    string `json:"v"`
	}
	rects := eval[[]rect](t, ctx, `Array.from(document.querySelectorAll("#patch-maps svg[data-kind] rect.cell[data-key]")).map(r => ({kind: r.closest("svg").dataset.kind, key: r.dataset.key, v: r.dataset.value}))`)
	got := map[string]rect{}
	for _, r := range rects {
		got[r.Key] = r
	}
	if len(doc.Results) == 0 || len(rects) != len(doc.Results) {
		t.Fatalf("%d cells in the maps, want %d", len(rects), len(doc.Results))
	}
	var best analysis.PatchedCell
	for i, c := range doc.Results {
		if len(c.Positions) != 1 {
			t.Fatalf("--pos each gave a cell of %d positions", len(c.Positions))
		}
		key := fmt.Sprintf("%s@%d", c.Hook, c.Positions[0].Corrupt)
		r, ok := got[key]
		if !ok || r.Kind != c.Kind || !sameFloat(r.V, c.Normalized) {
			t.Errorf("cell %s: %+v, want kind %s value %v", key, r, c.Kind, c.Normalized)
		}
		if i == 0 || c.Normalized > best.Normalized {
			best = c
		}
	}
	// hovering a cell names its position, its tokens and the effect
	key := fmt.Sprintf("%s@%d", best.Hook, best.Positions[0].Corrupt)
	tip := eval[string](t, ctx, fmt.Sprintf(`(() => { const r = document.querySelector('#patch-maps rect.cell[data-key=%q]');
		const b = r.getBoundingClientRect();
		r.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: b.x + 2, clientY: b.y + 2}));
		return document.querySelector(".tip").textContent; })()`, key))
	piece := doc.Corrupt.Tokens[best.Positions[0].Corrupt].Piece
	for _, want := range []string{best.Short, strconv.Itoa(best.Positions[0].Corrupt), strconv.Quote(piece)[1 : len(strconv.Quote(piece))-1], "normalised"} {
		if !strings.Contains(tip, want) {
			t.Errorf("tooltip %q lacks %q", tip, want)
		}
	}
	// clicking a cell shows it in the detail
	click(t, ctx, fmt.Sprintf(`#patch-maps rect.cell[data-key=%q]`, key))
	if got := eval[string](t, ctx, `document.getElementById("detail-hook").textContent`); got != best.Hook {
		t.Errorf("detail shows %q, want %s", got, best.Hook)
	}
	n := eval[cell](t, ctx, `(() => { const d = document.querySelector('#detail dd[data-field="normalized"]'); return {v: d.dataset.value, text: d.textContent}; })()`)
	checkNumber(t, "detail normalised", n, best.Normalized)
	noLeaks(t, w, pageURL)
	screenshot(t, ctx, "report-patch.png", 1280, 1400)

	// --from-compare: compare's ranking beside patching's
	var fc analysis.PatchResult
	fcURL := report(t, &fc, "patch", "-m", model, "-t", "1", "--clean", promptA, "--corrupt", promptB, "--answer", " she", "--wrong", " he", "--from-compare", "--top", "10")
	ctx2, w2 := open(t, fcURL)
	type fcRow struct {
		Rank cell `json:"rank"`
		Norm cell `json:"norm"`
		Rel  cell `json:"rel"`
	}
	fr := eval[[]fcRow](t, ctx2, `Array.from(document.querySelectorAll("#from-compare-table tbody tr")).map(tr => {
		const c = col => { const td = tr.querySelector('td[data-col="' + col + '"]'); return {v: td.dataset.value, text: td.textContent}; };
		return {rank: c("compare_rank"), norm: c("normalized"), rel: c("rel_l2")}; })`)
	if fc.FromCompare == nil || len(fr) != len(fc.FromCompare.Components) || len(fr) == 0 {
		t.Fatalf("%d rows beside compare's ranking, want %d", len(fr), len(fc.FromCompare.Components))
	}
	for i, c := range fc.FromCompare.Components {
		checkNumber(t, "compare rank", fr[i].Rank, float64(c.CompareRank))
		checkNumber(t, c.Hook+" normalised", fr[i].Norm, c.Normalized)
		checkNumber(t, c.Hook+" rel_l2", fr[i].Rel, c.RelL2)
	}
	// a row of the ranking selects its cell in the maps
	last := fc.FromCompare.Components[len(fc.FromCompare.Components)-1]
	click(t, ctx2, "#from-compare-table tbody tr:last-child")
	if got := eval[string](t, ctx2, `document.getElementById("detail-hook").textContent`); got != last.Hook {
		t.Errorf("after clicking the row of %s the detail shows %q", last.Hook, got)
	}
	if n := eval[int](t, ctx2, `document.querySelectorAll("#patch-maps rect.cell.selected").length`); n != 1 {
		t.Errorf("%d map cells selected after clicking a ranking row, want 1", n)
	}
	noLeaks(t, w2, fcURL)
}

func TestContrastReport(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	data := filepath.Join(moduleRoot(t), "cli", "testdata", "contrast")
	var doc analysis.ContrastResult
	pageURL := report(t, &doc, "contrast", "-m", model, "-t", "1", "--a", filepath.Join(data, "she.txt"), "--b", filepath.Join(data, "he.txt"), "--paired")
	ctx, w := open(t, pageURL)
	if got := eval[string](t, ctx, `document.getElementById("summary-text").textContent`); got != doc.Summary.Text {
		t.Errorf("summary %q, want %q", got, doc.Summary.Text)
	}
	seps := eval[[]cell](t, ctx, `Array.from(document.querySelectorAll("#ranking-table tbody tr")).map(tr => { const td = tr.querySelector('td[data-col="separation"]'); return {v: td.dataset.value, text: td.textContent}; })`)
	if len(seps) != len(doc.Components) || len(seps) == 0 {
		t.Fatalf("%d component rows, want %d", len(seps), len(doc.Components))
	}
	for i, c := range doc.Components {
		if c.Separation != nil {
			checkNumber(t, c.Hook+" separation", seps[i], *c.Separation)
		}
	}
	// one point per component in each chart (separation, held-out, sign)
	if n := eval[int](t, ctx, `document.querySelectorAll("#charts svg circle.pt").length`); n < 2*len(doc.Components) {
		t.Errorf("%d chart points, want at least %d", n, 2*len(doc.Components))
	}
	pick := doc.Components[len(doc.Components)-1]
	click(t, ctx, fmt.Sprintf(`#charts circle.pt[data-key=%q]`, pick.Hook))
	if got := eval[string](t, ctx, `document.getElementById("detail-hook").textContent`); got != pick.Hook {
		t.Errorf("detail shows %q, want %s", got, pick.Hook)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#lens-table tbody tr").length`); doc.Components[0].Lens != nil && n == 0 {
		t.Error("no lens rows")
	}
	noLeaks(t, w, pageURL)
}

func TestVecReport(t *testing.T) {
	model := testmodels.Path(t, testmodels.Stories260K)
	var doc analysis.VecResult
	pageURL := report(t, &doc, "vec", "-m", model, "-t", "1", "girl|boy", "she|he", "mother|father")
	ctx, w := open(t, pageURL)
	if len(doc.Hooks) == 0 {
		t.Fatal("vec gave no hooks")
	}
	h := doc.Hooks[0]
	vals := eval[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll("#cosine-matrix rect.cell")).map(r => [r.dataset.key, r.dataset.value]))`)
	if len(vals) != len(doc.Sources)*len(doc.Sources) {
		t.Fatalf("%d matrix cells, want %d", len(vals), len(doc.Sources)*len(doc.Sources))
	}
	for i := range doc.Sources {
		for j := range doc.Sources {
			got := vals[fmt.Sprintf("%d,%d", i, j)]
			if c := h.Cosine[i][j]; c == nil && got != "" || c != nil && !sameFloat(got, *c) {
				t.Errorf("cosine[%d][%d] shows %q, want %v", i, j, got, h.Cosine[i][j])
			}
		}
	}
	noLeaks(t, w, pageURL)
}
