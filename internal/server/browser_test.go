package server

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/browsertest"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write docs/img/serve-compare.png")

// TestPageCompare drives the served page in a headless Chromium: it fills
// in the compare form, submits it, waits for the report's views, and checks
// what they show against analysis.Compare run here on the same prompts.
func TestPageCompare(t *testing.T) {
	ctx := browsertest.New(t)
	w := browsertest.Watch(t, ctx)
	e := refEngine(t)
	s, log := newTestServer(t, e, nil)
	base := serve(t, s)

	const a, b = "Once upon a time there was a cat", "Once upon a time there was a dog"
	want, err := analysis.Compare(e, analysis.CompareOptions{Model: "stories260K.gguf", A: a, B: b, Positions: "last",
		Kinds: []models.Kind{models.ResidPost, models.ResidMid, models.AttnOut, models.MLPOut}, Sort: "rel", TopK: 3, LensK: 5, Neurons: 10})
	if err != nil {
		t.Fatal(err)
	}

	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(css(`#form-compare`)),
	)
	if err != nil {
		t.Fatalf("loading the page: %v (console: %v)", err, w.Errors())
	}
	// the page asks /api/info for the model's name
	model, err := chromedp.Run(ctx, chromedp.Poll[string](`document.getElementById("model").textContent`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("the page never showed the model: %v (console: %v)", err, w.Errors())
	}
	// one form at a time: the tabs show the others
	shownForms, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".serve-form")).filter(f => getComputedStyle(f).display !== "none").map(f => f.id)`))
	if err != nil || len(shownForms) != 1 || shownForms[0] != "form-compare" {
		t.Errorf("forms shown on load: %v (%v), want only form-compare", shownForms, err)
	}
	err = chromedp.Do(ctx,
		chromedp.SetValue(css(`#form-compare textarea[name=a]`), a),
		chromedp.SetValue(css(`#form-compare textarea[name=b]`), b),
		chromedp.Click(css(`#form-compare summary`)),
		chromedp.SetValue(css(`#form-compare input[name=top-k]`), "3"),
		chromedp.Click(css(`#form-compare button[type=submit]`)),
		chromedp.WaitReady(css(`#result[data-rendered="compare"]`)),
	)
	if err != nil {
		t.Fatalf("running compare from the page: %v (console: %v)", err, w.Errors())
	}
	if model != "stories260K.gguf" {
		t.Errorf("the page names the model %q", model)
	}
	type shown struct {
		Probs  []string `json:"probs"`
		Hooks  []string `json:"hooks"`
		Status string   `json:"status"`
		HTML   bool     `json:"html"`
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[shown](`({
		probs: Array.from(document.querySelectorAll('#predictions-table tbody td[data-col="prob_a"]')).map(td => td.dataset.value),
		hooks: Array.from(document.querySelectorAll("#ranking-table tbody tr")).map(tr => tr.dataset.key),
		status: document.getElementById("status").textContent,
		html: !document.getElementById("save-html").hidden,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Probs) != len(want.Prompts[0].Top) {
		t.Fatalf("%d predictions of A on the page, want %d (top-k 3 from the form)", len(got.Probs), len(want.Prompts[0].Top))
	}
	for i, p := range want.Prompts[0].Top {
		// data-value holds the number as JavaScript prints a double:
		// the shortest text that reads back as the same value
		v, err := strconv.ParseFloat(got.Probs[i], 64)
		if err != nil || v != p.Prob {
			t.Errorf("prediction %d of A: the page holds %q, want %v", i+1, got.Probs[i], p.Prob)
		}
	}
	if len(got.Hooks) != len(want.Components) {
		t.Fatalf("%d ranked components on the page, want %d", len(got.Hooks), len(want.Components))
	}
	for i, c := range want.Components {
		if got.Hooks[i] != c.Hook {
			t.Errorf("ranking row %d is %s, want %s", i, got.Hooks[i], c.Hook)
		}
	}
	if got.Status != "compare done" || !got.HTML {
		t.Errorf("status %q, HTML download offered: %v", got.Status, got.HTML)
	}
	if *updateScreenshots {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 1600)); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		root, err := testmodels.ModuleRoot(wd)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "docs", "img", "serve-compare.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// a patch whose decodes block until cancelled: the page shows it
	// running, Cancel stops it on the server, and the page says so
	started := make(chan struct{}, 1)
	blocked := &hookEngine{Engine: e, onRun: func(ctx context.Context) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}}
	engineFor(s, blocked)
	err = chromedp.Do(ctx,
		chromedp.Click(css(`[data-tab="patch"]`)),
		chromedp.WaitVisible(css(`#form-patch`)),
		chromedp.Click(css(`#form-patch button[type=submit]`)),
		chromedp.WaitVisible(css(`#cancel`)),
	)
	if err != nil {
		t.Fatalf("starting a patch from the page: %v (console: %v)", err, w.Errors())
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the patch never reached the engine")
	}
	if err := chromedp.Do(ctx, chromedp.Click(css(`#cancel`))); err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.Poll[string](`(s => s === "cancelled" && s)(document.getElementById("status").textContent)`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil || status != "cancelled" {
		t.Fatalf("after Cancel the page says %q (%v)", status, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "the client closed the request") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "patch failed") || !strings.Contains(log.String(), "the client closed the request") {
		t.Errorf("the server did not stop the patch the page cancelled:\n%s", log.String())
	}

	w.CheckNoErrors(t)
	w.CheckOnlyRequests(t, base+"/", base+"/static/app.css", base+"/static/serve.css", base+"/static/app.js",
		base+"/static/serve.js", base+"/api/info", base+"/api/compare", base+"/api/patch")
}
