// Package browsertest starts a headless Chromium for tests and watches what a
// page does in it: console errors, uncaught exceptions and network requests.
//
// Tests that need a browser call New; when no Chromium is on PATH the test is
// skipped with one line that says so and how to install one. Set
// LLDIFF_REQUIRE_BROWSER=1 (CI does) to turn that skip into a failure.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Browsers are the executable names looked up on PATH, in this order.
var Browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Timeout bounds one test's whole use of the browser, so that a page that
// never finishes fails the test instead of hanging it.
const Timeout = 2 * time.Minute

// RequireEnv names the environment variable that turns a missing browser
// from a skip into a failure.
const RequireEnv = "LLDIFF_REQUIRE_BROWSER"

// Find returns the path of the first browser of Browsers on PATH, or "".
func Find() string {
	for _, name := range Browsers {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New returns a chromedp context on a fresh headless Chromium with a
// 1280×900 window. The browser is started before New returns (a browser
// that cannot start fails the test with its output) and is stopped when the
// test ends. Without a browser on PATH the test is skipped.
func New(t testing.TB) context.Context {
	t.Helper()
	path := Find()
	if path == "" {
		msg := "BROWSER TESTS SKIPPED: no Chromium on PATH (looked for " +
			strings.Join(Browsers, ", ") + "); `apt-get install chromium` fixes it"
		if os.Getenv(RequireEnv) != "" {
			t.Fatal(msg + " (" + RequireEnv + " is set, so this is a failure)")
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(1280, 900),
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start its sandbox as root.
		opts = append(opts, chromedp.NoSandbox)
	}
	var out syncBuffer
	opts = append(opts, chromedp.CombinedOutput(&out))
	base, cancelTimeout := context.WithTimeout(context.Background(), Timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(base, opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		cancelTimeout()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v\nbrowser output:\n%s", path, err, out.String())
	}
	return ctx
}

// Watcher records what the page of one chromedp context reports: console
// messages of level error (console.error, console.assert, browser log
// errors such as a failed resource), uncaught exceptions, and every network
// request the page makes.
type Watcher struct {
	mu       sync.Mutex
	errors   []string
	requests []string
}

// Watch starts recording for the tab of ctx. Call it before navigating, so
// that nothing the page does at load time is missed.
func Watch(t testing.TB, ctx context.Context) *Watcher {
	t.Helper()
	w := &Watcher{}
	if err := chromedp.Listen(ctx, w.event); err != nil {
		t.Fatalf("watching the browser: %v", err)
	}
	return w
}

// event runs on chromedp's reader goroutine: it must be quick and must not
// call back into the browser.
func (w *Watcher) event(ev any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			w.errors = append(w.errors, "console."+string(e.Type)+": "+argsText(e.Args))
		}
	case *runtime.EventExceptionThrown:
		w.errors = append(w.errors, "exception: "+exceptionText(e.ExceptionDetails))
	case *log.EventEntryAdded:
		if e.Entry != nil && e.Entry.Level == log.EntryLevelError {
			w.errors = append(w.errors, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		if e.Request != nil {
			w.requests = append(w.requests, e.Request.URL)
		}
	}
}

// Errors returns the console errors and exceptions seen so far.
func (w *Watcher) Errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errors...)
}

// Requests returns the URLs of every request the page made so far, in order.
func (w *Watcher) Requests() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.requests...)
}

// CheckNoErrors fails the test for each console error or exception seen.
func (w *Watcher) CheckNoErrors(t testing.TB) {
	t.Helper()
	for _, e := range w.Errors() {
		t.Errorf("browser: %s", e)
	}
}

// CheckOnlyRequests fails the test for each request whose URL, without its
// #fragment, is not one of allowed. A data: URL is the page's own content
// and is allowed.
func (w *Watcher) CheckOnlyRequests(t testing.TB, allowed ...string) {
	t.Helper()
	for _, u := range w.Requests() {
		if i := strings.IndexByte(u, '#'); i >= 0 {
			u = u[:i]
		}
		ok := strings.HasPrefix(u, "data:")
		for _, a := range allowed {
			if u == a {
				ok = true
			}
		}
		if !ok {
			t.Errorf("browser: the page requested %s; only %v is allowed", u, allowed)
		}
	}
}

func argsText(args []*runtime.RemoteObject) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		parts = append(parts, objectText(a))
	}
	return strings.Join(parts, " ")
}

func objectText(o *runtime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if o.Type == runtime.RemoteObjectTypeString && len(o.Value) > 0 {
		var s string
		if err := json.Unmarshal(o.Value, &s); err == nil {
			return s
		}
	}
	if o.Description != "" {
		return o.Description
	}
	if len(o.Value) > 0 {
		return string(o.Value)
	}
	if o.UnserializableValue != "" {
		return string(o.UnserializableValue)
	}
	return string(o.Type)
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "(no details)"
	}
	s := d.Text
	if d.Exception != nil {
		s += " " + objectText(d.Exception)
	}
	return fmt.Sprintf("%s (%s:%d:%d)", s, d.URL, d.LineNumber+1, d.ColumnNumber+1)
}

// syncBuffer collects the browser's output from its goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
