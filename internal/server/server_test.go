package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/models/reference"
)

// These tests run the server on the reference engine (pure Go) with
// stories260K: what they check is the server, not llama.cpp, which
// server_cgo_test.go drives through the serve command.

var (
	refOnce sync.Once
	refEng  *reference.Engine
	refErr  error
)

// refEngine is the reference engine on stories260K, loaded once.
func refEngine(t testing.TB) *reference.Engine {
	t.Helper()
	path := testmodels.Path(t, testmodels.Stories260K)
	refOnce.Do(func() { refEng, refErr = reference.NewEngine(path) })
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refEng
}

// newTestServer returns a server on engine e (the reference engine when
// nil) with limits changed by edit, and its log.
func newTestServer(t testing.TB, e models.Engine, edit func(*Config)) (*Server, *syncBuffer) {
	t.Helper()
	if e == nil {
		e = refEngine(t)
	}
	log := &syncBuffer{}
	cfg := Config{Model: "stories260K.gguf", Engine: func(context.Context) models.Engine { return e },
		Listen: "127.0.0.1:8080", Limits: DefaultLimits(), Log: log}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.CancelRuns)
	return s, log
}

// post sends a JSON POST to the handler as a same-origin page would.
func post(h http.Handler, path, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "http://127.0.0.1:8080"+path, strings.NewReader(body))
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func errorOf(t testing.TB, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: want a JSON error, got %q", w.Code, w.Body.String())
	}
	return e.Error
}

func TestHostCheck(t *testing.T) {
	for _, tc := range []struct {
		host   string
		edit   func(*Config)
		wantOK bool
	}{
		{"127.0.0.1:8080", nil, true},
		{"localhost:8080", nil, true},
		{"LOCALHOST", nil, true},
		{"[::1]:8080", nil, true},
		{"127.0.0.2:8080", nil, true}, // all of 127/8 is loopback
		{"localhost.:8080", nil, true},
		{"evil.example:8080", nil, false}, // DNS rebinding: a name that now resolves to 127.0.0.1
		{"evil.example", nil, false},
		{"localhost.evil.example:8080", nil, false},
		{"127.0.0.1.evil.example", nil, false},
		{"192.168.1.5:8080", nil, false},
		{"", nil, false},
		{"192.168.1.5:8080", func(c *Config) { c.AllowRemote = true }, true},
		{"evil.example:8080", func(c *Config) { c.AllowRemote = true }, false}, // still no names
		{"box.lan:8080", func(c *Config) { c.AllowHosts = []string{"box.lan"} }, true},
		{"10.0.0.7:9000", func(c *Config) { c.Listen = "10.0.0.7:9000" }, true},
		{"myhost:8080", func(c *Config) { c.Listen = "myhost:8080" }, true},
	} {
		t.Run(tc.host, func(t *testing.T) {
			s, log := newTestServer(t, nil, tc.edit)
			r := httptest.NewRequest("GET", "/api/info", nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if tc.wantOK {
				if w.Code != 200 {
					t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
				}
				return
			}
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d, want 403", w.Code)
			}
			if msg := errorOf(t, w); !strings.Contains(msg, "is not this server") || !strings.Contains(msg, "--allow-host") {
				t.Errorf("message %q does not say why and what to do", msg)
			}
			if !strings.Contains(log.String(), "refused: Host") {
				t.Errorf("the refusal is not logged: %q", log.String())
			}
		})
	}
}

func TestOriginCheck(t *testing.T) {
	s, _ := newTestServer(t, nil, nil)
	h := s.Handler()
	// a body the parser refuses: a request that passes the guard gets 400
	const bad = `{"a": "x"}`
	for _, tc := range []struct {
		name   string
		header []string
		want   int
	}{
		{"no origin (curl)", nil, 400},
		{"same origin", []string{"Origin", "http://127.0.0.1:8080", "Sec-Fetch-Site", "same-origin"}, 400},
		{"typed in the address bar", []string{"Sec-Fetch-Site", "none"}, 400},
		{"other origin", []string{"Origin", "http://evil.example"}, 403},
		{"other port", []string{"Origin", "http://127.0.0.1:9999"}, 403},
		{"null origin", []string{"Origin", "null"}, 403},
		{"cross-site fetch", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same-site fetch", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"form post", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"text/plain", []string{"Content-Type", "text/plain"}, 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(h, "/api/compare", bad, tc.header...)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			msg := errorOf(t, w)
			if tc.want == 403 && !strings.Contains(msg, "cross-origin request refused") {
				t.Errorf("message %q", msg)
			}
		})
	}
	// GET stays readable from a link
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "localhost:8080"
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "/static/serve.js") {
		t.Errorf("GET / from a link: status %d", w.Code)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestOptionsRefused(t *testing.T) {
	s, _ := newTestServer(t, nil, nil)
	h := s.Handler()
	for _, tc := range []struct {
		path, body, want string
	}{
		{"/api/compare", `{"a": "x", "b": "y", "a-file": "/etc/passwd"}`, `"a-file" names a file`},
		{"/api/compare", `{"a": "x", "b": "y", "model": "/other.gguf"}`, `"model" names a file`},
		{"/api/compare", `{"a": "x", "b": "y", "json": true}`, `"json" names a file`},
		{"/api/patch", `{"clean": "x", "corrupt": "y", "answer": " z", "plot": "/tmp/p.png"}`, `"plot" names a file`},
		{"/api/contrast", `{"a": ["x"], "b": ["y"], "export-cvec": "/tmp/c.gguf"}`, `"export-cvec" names a file`},
		{"/api/contrast", `{"a": "set-a.txt", "b": "set-b.txt"}`, `"a" takes the prompts themselves`},
		{"/api/compare", `{"a": "x", "b": "y", "threads": 64}`, `"threads" is a setting of the loaded model`},
		{"/api/compare", `{"a": "x", "b": "y", "ctx-size": 100000}`, `"ctx-size" is a setting of the loaded model`},
		{"/api/compare", `{"a": "x", "b": "y", "topk": 3}`, `unknown option "topk" for compare; the options are: a, answer, b, bos, kinds, lens-k, lens-norm, neurons, pos, sort, special, top-k`},
		{"/api/compare", `{"a": "x", "b": "y", "top-k": "five"}`, `"top-k": a string is not a valid value here (want a number)`},
		{"/api/compare", `["x", "y"]`, `the body must be one JSON object`},
		{"/api/compare", `{"a": "x"}`, `compare needs two non-empty prompts`},
		{"/api/compare", `{"a": "x", "b": "y", "pos": "-0"}`, `"-0" is not a position`},
		{"/api/compare", `{"a": "x", "b": "y", "lens-norm": "weird"}`, `weird`},
		{"/api/compare", `{"a": "x", "b": "y", "bos": "maybe"}`, `"bos": "maybe": use auto, yes or no`},
		{"/api/patch", `{"clean": "x", "corrupt": "y"}`, `no answer`},
		{"/api/patch", `{"clean": "x", "corrupt": "y", "answer": " z", "top": 3}`, `add "from-compare": true`},
		{"/api/patch", `{"clean": "x", "corrupt": "y", "answer": " z", "kinds": "resid_post.3"}`, `not a component kind that can be patched`},
		{"/api/patch", `{"clean": "x", "corrupt": "y", "answer": " z", "parallel": 100000}`, `at most 256 sequences`},
		{"/api/contrast", `{"a": ["x", ""], "b": ["y"]}`, `a[1] is empty`},
		{"/api/contrast", `{"a": ["x", "z"], "b": ["y"], "paired": true}`, `a has 2 and b has 1`},
	} {
		t.Run(tc.body, func(t *testing.T) {
			w := post(h, tc.path, tc.body)
			if w.Code != 400 {
				t.Fatalf("status %d, want 400: %s", w.Code, w.Body)
			}
			if msg := errorOf(t, w); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q\nwant it to contain %q", msg, tc.want)
			}
		})
	}
	w := post(h, "/api/compare?format=pdf", `{"a": "x", "b": "y"}`)
	if w.Code != 400 || !strings.Contains(errorOf(t, w), `format="pdf"`) {
		t.Errorf("format=pdf: %d %s", w.Code, w.Body)
	}
	r := httptest.NewRequest("GET", "/api/compare", nil)
	r.Host = "localhost"
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, r)
	if rw.Code != http.StatusMethodNotAllowed || rw.Header().Get("Allow") != "POST" {
		t.Errorf("GET /api/compare: %d, Allow %q", rw.Code, rw.Header().Get("Allow"))
	}
}

func TestLimits(t *testing.T) {
	e := refEngine(t)
	t.Run("body", func(t *testing.T) {
		s, _ := newTestServer(t, nil, func(c *Config) { c.Limits.MaxBody = 100 })
		w := post(s.Handler(), "/api/compare", fmt.Sprintf(`{"a": %q, "b": "y"}`, strings.Repeat("x", 100)))
		if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, w), "limit of 100 bytes") {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		// at the limit it is read
		body := `{"a": "x", "b": "y"}`
		body = body[:len(body)-1] + strings.Repeat(" ", 100-len(body)) + "}"
		if w := post(s.Handler(), "/api/compare", body); w.Code != 200 {
			t.Fatalf("a body of exactly 100 bytes: status %d: %s", w.Code, w.Body)
		}
	})
	t.Run("prompt", func(t *testing.T) {
		s, _ := newTestServer(t, nil, func(c *Config) { c.Limits.MaxPrompt = 10 })
		for _, body := range []string{
			`{"a": "01234567890", "b": "y"}`,
			`{"a": "x", "b": "y", "answer": [" 0123456789"]}`,
			`{"clean": "x", "corrupt": "y", "answer": " 0123456789"}`,
		} {
			path := "/api/compare"
			if strings.Contains(body, "clean") {
				path = "/api/patch"
			}
			w := post(s.Handler(), path, body)
			if w.Code != 400 || !strings.Contains(errorOf(t, w), "more than the server's limit of 10 (--max-prompt)") {
				t.Errorf("%s: status %d: %s", body, w.Code, w.Body)
			}
		}
	})
	t.Run("tokens", func(t *testing.T) {
		a, b := "Once upon a time there was a cat", "Once upon a time there was a dog"
		n := 0
		for _, p := range []string{a, b} {
			ids, err := e.Tokenize(p, models.TokenizeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n += len(ids)
		}
		body := fmt.Sprintf(`{"a": %q, "b": %q}`, a, b)
		s, _ := newTestServer(t, nil, func(c *Config) { c.Limits.MaxTokens = n - 1 })
		w := post(s.Handler(), "/api/compare", body)
		if w.Code != 400 || !strings.Contains(errorOf(t, w), fmt.Sprintf("have %d tokens together, more than the server's limit of %d", n, n-1)) {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		s, _ = newTestServer(t, nil, func(c *Config) { c.Limits.MaxTokens = n })
		if w := post(s.Handler(), "/api/compare", body); w.Code != 200 {
			t.Fatalf("%d tokens with a limit of %d: status %d: %s", n, n, w.Code, w.Body)
		}
	})
	t.Run("prompts", func(t *testing.T) {
		s, _ := newTestServer(t, nil, func(c *Config) { c.Limits.MaxPrompts = 3 })
		w := post(s.Handler(), "/api/contrast", `{"a": ["x", "y"], "b": ["z", "w"]}`)
		if w.Code != 400 || !strings.Contains(errorOf(t, w), "4 prompts: the server takes at most 3") {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
	t.Run("run time", func(t *testing.T) {
		// a runner that takes 50 ms per call against a limit of 10 ms
		slow := &hookEngine{Engine: e, onRun: func(ctx context.Context) error {
			select {
			case <-time.After(50 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
		s, log := newTestServer(t, nil, func(c *Config) { c.Limits.MaxRun = 10 * time.Millisecond })
		engineFor(s, slow)
		w := post(s.Handler(), "/api/compare", `{"a": "x", "b": "y"}`)
		if w.Code != 503 || !strings.Contains(errorOf(t, w), "--max-run") {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if !strings.Contains(log.String(), "compare failed") {
			t.Errorf("log: %q", log.String())
		}
	})
}

// hookEngine is an engine whose runners call onRun with the run's context
// before each call (a test stands in for a slow or blocked decode).
type hookEngine struct {
	models.Engine
	onRun func(ctx context.Context) error
	mu    sync.Mutex
	ctx   context.Context
}

func (e *hookEngine) NewRunner(seqs [][]int32, nSeq int) (models.Runner, error) {
	r, err := e.Engine.NewRunner(seqs, nSeq)
	if err != nil {
		return nil, err
	}
	return &hookRunner{Runner: r, e: e}, nil
}

type hookRunner struct {
	models.Runner
	e *hookEngine
}

func (r *hookRunner) wait() error {
	r.e.mu.Lock()
	ctx, onRun := r.e.ctx, r.e.onRun
	r.e.mu.Unlock()
	return onRun(ctx)
}

func (r *hookRunner) RunRows(seqs [][]int32, pos [][]int, hooks []models.Hook) ([]*models.SeqRows, error) {
	if err := r.wait(); err != nil {
		return nil, err
	}
	return r.Runner.RunRows(seqs, pos, hooks)
}

func (r *hookRunner) Run(seqs [][]int32, hooks []models.Hook) ([]*models.Cache, error) {
	if err := r.wait(); err != nil {
		return nil, err
	}
	return r.Runner.Run(seqs, hooks)
}

// engineFor makes s hand e's runners the context of each run.
func engineFor(s *Server, e *hookEngine) {
	s.cfg.Engine = func(ctx context.Context) models.Engine {
		e.mu.Lock()
		e.ctx = ctx
		e.mu.Unlock()
		return e
	}
}

// events reads NDJSON events from r until one of the wanted kinds, and
// returns it.
func nextEvent(t testing.TB, sc *bufio.Scanner, want ...string) map[string]any {
	t.Helper()
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not an NDJSON event: %q", sc.Text())
		}
		for _, w := range want {
			if ev["event"] == w {
				return ev
			}
		}
		if ev["event"] == "error" {
			t.Fatalf("error event: %v", ev)
		}
	}
	t.Fatalf("the stream ended before an event %v (%v)", want, sc.Err())
	return nil
}

// startStream posts body to url with Accept: application/x-ndjson and
// returns the response and a scanner over its events.
func startStream(t testing.TB, ctx context.Context, url, body string) (*http.Response, *bufio.Scanner) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", ndjson)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != ndjson {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		t.Fatalf("status %d, type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	return res, bufio.NewScanner(res.Body)
}

// serve runs s on a loopback listener for the test and returns its URL.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		s.CancelRuns()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestQueue(t *testing.T) {
	release := make(chan struct{})
	blocked := &hookEngine{Engine: refEngine(t), onRun: func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	s, log := newTestServer(t, nil, func(c *Config) { c.Limits.Queue = 1 })
	engineFor(s, blocked)
	url := serve(t, s)
	ctx := context.Background()

	// the first request runs (and blocks), the second waits in the queue
	res1, ev1 := startStream(t, ctx, url+"/api/compare", `{"a": "The cat", "b": "The dog"}`)
	defer res1.Body.Close()
	nextEvent(t, ev1, "started")
	res2, ev2 := startStream(t, ctx, url+"/api/compare", `{"a": "The sun", "b": "The moon"}`)
	defer res2.Body.Close()
	if q := nextEvent(t, ev2, "queued"); q["position"] != 1.0 {
		t.Fatalf("queued event %v, want position 1", q)
	}
	// the third finds the queue full
	for _, stream := range []bool{false, true} {
		req, _ := http.NewRequest("POST", url+"/api/compare", strings.NewReader(`{"a": "x", "b": "y"}`))
		req.Header.Set("Content-Type", "application/json")
		if stream {
			req.Header.Set("Accept", ndjson)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
		if res.StatusCode != 503 || err != nil || ra < 1 {
			t.Fatalf("a request beyond the queue: status %d, Retry-After %q, want 503 and a number of seconds: %s", res.StatusCode, res.Header.Get("Retry-After"), b)
		}
		if !strings.Contains(string(b), "the model is busy") {
			t.Errorf("message %s", b)
		}
	}
	// both others finish once the runs go on, each with its own prompts
	close(release)
	for i, sc := range []*bufio.Scanner{ev1, ev2} {
		doc := nextEvent(t, sc, "result")["document"].(map[string]any)
		prompts := doc["prompts"].([]any)
		want := [][2]string{{"The cat", "The dog"}, {"The sun", "The moon"}}[i]
		if a, b := prompts[0].(map[string]any)["text"], prompts[1].(map[string]any)["text"]; a != want[0] || b != want[1] {
			t.Errorf("request %d got prompts %q, %q, want %q", i+1, a, b, want)
		}
	}
	if n := strings.Count(log.String(), "refused /api/compare: busy"); n != 2 {
		t.Errorf("log has %d busy refusals, want 2:\n%s", n, log.String())
	}
}

// TestCancel checks that a client closing its request stops the run and
// frees the model: a run blocked in the engine sees its context cancelled,
// the handler answers nothing more, and the next request runs.
func TestCancel(t *testing.T) {
	saw := make(chan error, 1)
	started := make(chan struct{}, 1)
	blocked := &hookEngine{Engine: refEngine(t), onRun: func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		saw <- context.Cause(ctx)
		return ctx.Err()
	}}
	s, log := newTestServer(t, nil, nil)
	engineFor(s, blocked)
	url := serve(t, s)

	ctx, cancel := context.WithCancel(context.Background())
	res, ev := startStream(t, ctx, url+"/api/compare", `{"a": "The cat", "b": "The dog"}`)
	nextEvent(t, ev, "started")
	<-started
	cancel()
	res.Body.Close()
	select {
	case cause := <-saw:
		if !errors.Is(cause, context.Canceled) {
			t.Errorf("the run was stopped by %v, want the client's leaving", cause)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not see the client leave")
	}
	// the model is free again: a plain request runs to the end
	blocked.mu.Lock()
	blocked.onRun = func(context.Context) error { return nil }
	blocked.mu.Unlock()
	req, _ := http.NewRequest("POST", url+"/api/compare", strings.NewReader(`{"a": "The sun", "b": "The moon"}`))
	req.Header.Set("Content-Type", "application/json")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Body.Close()
	var doc analysis.CompareResult
	if err := json.NewDecoder(r2.Body).Decode(&doc); err != nil || r2.StatusCode != 200 || doc.Prompts[0].Text != "The sun" {
		t.Fatalf("after the cancel: status %d, %v, %+v", r2.StatusCode, err, doc.Prompts)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "the client closed the request") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "compare failed") || !strings.Contains(log.String(), "the client closed the request") {
		t.Errorf("log does not record the cancelled run:\n%s", log.String())
	}
}

// TestLoad sends a few hundred requests from concurrent clients over
// loopback and checks that each answer is its own request's document: the
// one analysis.Compare gives for those prompts, run alone.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	e := refEngine(t)
	const pairs, clients, requests = 12, 16, 240
	words := []string{"cat", "dog", "girl", "boy", "sun", "moon", "tree", "bird", "fish", "king", "queen", "ball"}
	type pair struct{ a, b string }
	var ps []pair
	want := map[pair]string{}
	for i := range pairs {
		p := pair{"Once upon a time there was a " + words[i], "Once upon a time there was a " + words[(i+5)%pairs]}
		ps = append(ps, p)
		doc, err := analysis.Compare(e, analysis.CompareOptions{Model: "stories260K.gguf", A: p.a, B: p.b, Positions: "last",
			Kinds: []models.Kind{models.ResidPost, models.ResidMid, models.AttnOut, models.MLPOut}, Sort: "rel", TopK: 5, LensK: 5, Neurons: 10})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := writeJSON(&b, doc); err != nil {
			t.Fatal(err)
		}
		want[p] = b.String()
	}
	s, _ := newTestServer(t, nil, func(c *Config) { c.Limits.Queue = clients })
	url := serve(t, s)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	got := 0
	next := make(chan int)
	go func() {
		for i := range requests {
			next <- i
		}
		close(next)
	}()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := ps[i%pairs]
				body, _ := json.Marshal(map[string]string{"a": p.a, "b": p.b})
				req, _ := http.NewRequest("POST", url+"/api/compare", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				stream := i%3 == 0
				if stream {
					req.Header.Set("Accept", ndjson)
				}
				res, err := client.Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("request %d: %v", i, err))
					mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				doc := string(b)
				if stream {
					doc = resultOf(b)
				}
				mu.Lock()
				switch {
				case res.StatusCode != 200:
					failures = append(failures, fmt.Sprintf("request %d: status %d: %s", i, res.StatusCode, b))
				case !sameJSON(doc, want[p]):
					failures = append(failures, fmt.Sprintf("request %d (%q, %q) got another document: %.200s", i, p.a, p.b, doc))
				default:
					got++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, f := range failures[:min(len(failures), 10)] {
		t.Error(f)
	}
	if got != requests {
		t.Errorf("%d of %d requests answered with their own document", got, requests)
	}
}

// resultOf returns the document of a stream's result event, as JSON.
func resultOf(stream []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var ev struct {
			Event    string          `json:"event"`
			Document json.RawMessage `json:"document"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "result" {
			return string(ev.Document)
		}
	}
	return ""
}

// sameJSON reports whether two JSON texts hold the same values.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// TestShutdown checks Serve's shutdown: the running request finishes
// within the grace period, a queued one is refused, new connections are
// refused, and Serve returns nil.
func TestShutdown(t *testing.T) {
	for _, grace := range []time.Duration{time.Minute, 0} {
		t.Run(fmt.Sprint("grace ", grace), func(t *testing.T) {
			release := make(chan struct{})
			blocked := &hookEngine{Engine: refEngine(t), onRun: func(ctx context.Context) error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}}
			s, _ := newTestServer(t, nil, func(c *Config) { c.Grace = grace })
			engineFor(s, blocked)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			url := "http://" + ln.Addr().String()
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, ln) }()

			res1, ev1 := startStream(t, context.Background(), url+"/api/compare", `{"a": "The cat", "b": "The dog"}`)
			defer res1.Body.Close()
			nextEvent(t, ev1, "started")
			res2, ev2 := startStream(t, context.Background(), url+"/api/compare", `{"a": "The sun", "b": "The moon"}`)
			defer res2.Body.Close()
			nextEvent(t, ev2, "queued")

			stop()
			// the queued request is refused at once
			if ev := nextEvent(t, ev2, "error"); ev["status"] != 503.0 || !strings.Contains(ev["error"].(string), "shutting down") {
				t.Errorf("queued request: %v", ev)
			}
			if grace > 0 {
				// the running one finishes once its decode does
				time.Sleep(50 * time.Millisecond)
				close(release)
				doc := nextEvent(t, ev1, "result")["document"].(map[string]any)
				if doc["prompts"].([]any)[0].(map[string]any)["text"] != "The cat" {
					t.Errorf("the running request got %v", doc["prompts"])
				}
			} else {
				// without grace it is cancelled
				if ev := nextEvent(t, ev1, "error"); ev["status"] != 503.0 || !strings.Contains(ev["error"].(string), "shutting down") {
					t.Errorf("running request: %v", ev)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Serve did not return")
			}
			if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				c.Close()
				t.Error("the listener still accepts connections after Serve returned")
			}
		})
	}
}

// syncBuffer is a log written by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRunOutlivesReadTimeout checks that a run longer than the server's
// ReadTimeout is not taken for a client that left: the read deadline
// covers reading the request, not the run (net/http clears it once the
// body is read; a handler that set its own would break this).
func TestRunOutlivesReadTimeout(t *testing.T) {
	slow := &hookEngine{Engine: refEngine(t), onRun: func(ctx context.Context) error {
		select {
		case <-time.After(600 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	s, log := newTestServer(t, nil, nil)
	engineFor(s, slow)
	hs := s.HTTPServer()
	hs.ReadTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	for _, stream := range []bool{false, true} {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/api/compare", strings.NewReader(`{"a": "The cat", "b": "The dog"}`))
		req.Header.Set("Content-Type", "application/json")
		if stream {
			req.Header.Set("Accept", ndjson)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), `"text"`) || strings.Contains(string(b), `"error"`) {
			t.Fatalf("stream %v: a run of 600 ms behind a ReadTimeout of 200 ms: status %d: %.300s\n%s", stream, res.StatusCode, b, log.String())
		}
	}
}

// TestRender checks POST /api/render: a document in, its --html page out
// as a download, with the document's own fields only.
func TestRender(t *testing.T) {
	s, _ := newTestServer(t, nil, nil)
	h := s.Handler()
	w := post(h, "/api/compare", `{"a": "The cat </script><b>", "b": "The dog"}`)
	if w.Code != 200 {
		t.Fatalf("compare: %d %s", w.Code, w.Body)
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["injected"] = "<script>alert(1)</script>"
	body, _ := json.Marshal(doc)
	r := post(h, "/api/render?kind=compare", string(body))
	page := r.Body.String()
	if r.Code != 200 || !strings.HasPrefix(r.Header().Get("Content-Type"), "text/html") ||
		r.Header().Get("Content-Disposition") != `attachment; filename="compare.html"` {
		t.Fatalf("render: %d %v %.200s", r.Code, r.Header(), page)
	}
	if !strings.Contains(page, `data-kind="compare"`) || !strings.Contains(page, `The cat \u003c/script\u003e\u003cb\u003e`) {
		t.Errorf("the page does not hold the document's prompt, escaped: %.300s", page)
	}
	if strings.Contains(page, "injected") || strings.Contains(page, "alert(1)") {
		t.Error("a field that is not the document's reached the page")
	}
	for _, tc := range []struct{ path, body, want string }{
		{"/api/render?kind=steer", string(body), `kind="steer": use compare, patch or contrast`},
		{"/api/render?kind=patch", `{"runs": "many"}`, "the body is not a patch document"},
	} {
		if r := post(h, tc.path, tc.body); r.Code != 400 || !strings.Contains(errorOf(t, r), tc.want) {
			t.Errorf("%s: %d %s", tc.path, r.Code, r.Body)
		}
	}
}
