package browsertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestWatcherSeesErrorsAndRequests loads a page that logs an error, throws,
// and requests an image, and checks that the watcher reports all three: a
// watcher that saw nothing would make every "no console errors" check pass.
func TestWatcherSeesErrorsAndRequests(t *testing.T) {
	ctx := New(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "page.html")
	html := `<!doctype html><title>t</title><img src="missing.png">
<script>console.error("first %d", 7); setTimeout(function(){ throw new Error("boom") }, 0);</script>`
	if err := os.WriteFile(page, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	w := Watch(t, ctx)
	url := "file://" + page
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.Sleep(300e6)); err != nil {
		t.Fatal(err)
	}
	errs := strings.Join(w.Errors(), "\n")
	for _, want := range []string{"console.error: first %d 7", "boom"} {
		if !strings.Contains(errs, want) {
			t.Errorf("errors %q do not contain %q", errs, want)
		}
	}
	reqs := w.Requests()
	var sawPage, sawImage bool
	for _, r := range reqs {
		sawPage = sawPage || r == url
		sawImage = sawImage || strings.HasSuffix(r, "/missing.png")
	}
	if !sawPage || !sawImage {
		t.Errorf("requests %v: want the page and missing.png", reqs)
	}
}
