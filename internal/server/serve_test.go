package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lldiff/lldiff/cli"
	"github.com/lldiff/lldiff/internal/testmodels"
)

// These tests run `lldiff serve` itself, in this process, on llama.cpp
// with stories260K, and stop it as Ctrl-C does: with SIGINT, which serve
// catches (the signal never reaches the test runner once serve listens).

// served is a running `lldiff serve`.
type served struct {
	url  string
	log  *lockedBuffer
	done chan error
}

// lockedBuffer is serve's error stream, written by its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls s's log until it holds re, and returns the match.
func (s *served) waitFor(t testing.TB, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := rx.FindStringSubmatch(s.log.String()); m != nil {
			return m
		}
		select {
		case err := <-s.done:
			t.Fatalf("serve returned %v before its log held %q:\n%s", err, re, s.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve's log never held %q:\n%s", re, s.log.String())
	return nil
}

// interrupt sends SIGINT to this process, which serve catches.
func (s *served) interrupt(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
}

// stop interrupts serve and waits for it to return nil.
func (s *served) wait(t testing.TB) {
	t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve returned %v\n%s", err, s.log.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop:\n%s", s.log.String())
	}
}

// startServe runs `lldiff serve -m stories260K ARGS` on a free loopback
// port and returns once it listens.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	model := testmodels.Path(t, testmodels.Stories260K)
	s := &served{log: &lockedBuffer{}, done: make(chan error, 1)}
	io := &cli.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: s.log}
	root := cli.NewRootCmd(io)
	root.SetArgs(cli.NormalizeArgs(append([]string{"serve", "-m", model, "--listen", "127.0.0.1:0"}, args...)))
	go func() { s.done <- root.Execute() }()
	s.url = s.waitFor(t, `serving .* on (http://127\.0\.0\.1:\d+)/`)[1]
	return s
}

// runCommand runs lldiff with args in this process and returns its output.
func runCommand(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errOut bytes.Buffer
	root := cli.NewRootCmd(&cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	root.SetArgs(cli.NormalizeArgs(args))
	if err := root.Execute(); err != nil {
		t.Fatalf("lldiff %v: %v\n%s", args, err, errOut.String())
	}
	return out.Bytes()
}

func postJSON(t testing.TB, url string, body any) (*http.Response, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, out
}

// normalize decodes a document and blanks what differs from one run to
// the next (timings) or by where the prompts came from (files or the
// request), so that two documents of the same analysis compare equal.
func normalize(t testing.TB, doc []byte) any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("not a JSON document: %v\n%.300s", err, doc)
	}
	for _, k := range []string{"seconds", "runs_per_second"} {
		delete(v, k) // patch
	}
	delete(v, "throughput") // contrast: seconds and rates
	for _, side := range []string{"a", "b"} {
		if set, ok := v[side].(map[string]any); ok {
			delete(set, "source")
		}
	}
	return v
}

// TestAPIEqualsCommand checks that the API answers with the document the
// command prints with --json, for the same options: compare, patch and
// contrast on stories260K through llama.cpp.
func TestAPIEqualsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lldiff serve on llama.cpp: skipped with -short")
	}
	model := testmodels.Path(t, testmodels.Stories260K)
	s := startServe(t, "-t", "1")
	defer func() { s.interrupt(t); s.wait(t) }()

	dir := t.TempDir()
	setA := []string{"Once upon a time, there was a happy girl.", "The sun was warm and the girl smiled.", "She laughed and played all day."}
	setB := []string{"Once upon a time, there was a sad girl.", "The rain was cold and the girl cried.", "She sat alone and cried all day."}
	fileA, fileB := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	for f, set := range map[string][]string{fileA: setA, fileB: setB} {
		if err := os.WriteFile(f, []byte(strings.Join(set, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clean, corrupt := "Once upon a time, there was a little girl. One day,", "Once upon a time, there was a little boy. One day,"
	for _, tc := range []struct {
		name string
		args []string
		path string
		body map[string]any
	}{
		{"compare", []string{"compare", clean, corrupt}, "/api/compare",
			map[string]any{"a": clean, "b": corrupt}},
		{"compare options", []string{"compare", clean, corrupt, "--pos", "-1,-2", "--kinds", "resid_post,mlp_out", "--sort", "l2", "--top-k", "3", "--lens-k", "2", "--lens-norm", "gamma", "--neurons", "4", "--answer", " she", "--answer", " he", "--bos", "yes"},
			"/api/compare", map[string]any{"a": clean, "b": corrupt, "pos": "-1,-2", "kinds": "resid_post,mlp_out", "sort": "l2", "top-k": 3, "lens-k": 2, "lens-norm": "gamma", "neurons": 4, "answer": []string{" she", " he"}, "bos": "yes"}},
		{"patch", []string{"patch", "--clean", clean, "--corrupt", corrupt, "--answer", " she", "--wrong", " he"}, "/api/patch",
			map[string]any{"clean": clean, "corrupt": corrupt, "answer": " she", "wrong": " he"}},
		{"patch options", []string{"patch", "--clean", clean, "--corrupt", corrupt, "--answer", " she", "--kinds", "attn_out,z", "--layers", "1,-1", "--pos", "last", "--from-compare", "--top", "3", "--parallel", "2"},
			"/api/patch", map[string]any{"clean": clean, "corrupt": corrupt, "answer": " she", "kinds": "attn_out,z", "layers": "1,-1", "pos": "last", "from-compare": true, "top": 3, "parallel": 2}},
		{"contrast", []string{"contrast", "--a", fileA, "--b", fileB, "--paired", "--kinds", "resid_post,attn_out", "--parallel", "2", "--lens-k", "3"},
			"/api/contrast", map[string]any{"a": setA, "b": setB, "paired": true, "kinds": "resid_post,attn_out", "parallel": 2, "lens-k": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := runCommand(t, append(append([]string{}, tc.args...), "-m", model, "-t", "1", "--json")...)
			res, got := postJSON(t, s.url+tc.path, tc.body)
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, got)
			}
			gn, wn := normalize(t, got), normalize(t, want)
			gb, _ := json.MarshalIndent(gn, "", " ")
			wb, _ := json.MarshalIndent(wn, "", " ")
			if !bytes.Equal(gb, wb) {
				t.Fatalf("the API's document differs from the command's:\nAPI:     %.600s\ncommand: %.600s", gb, wb)
			}
			if tc.name == "compare" && !bytes.Equal(got, want) {
				// nothing in compare's document varies: the bytes agree too
				t.Errorf("compare: the API's bytes differ from --json's")
			}
		})
	}
	// ?format=html answers the --html page of the document
	b, _ := json.Marshal(map[string]any{"a": clean, "b": corrupt})
	res, err := http.Post(s.url+"/api/compare?format=html", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(res.Header.Get("Content-Disposition"), `filename="compare.html"`) ||
		!bytes.Contains(page, []byte(`data-kind="compare"`)) {
		t.Errorf("format=html: status %d, %v, %.200s", res.StatusCode, res.Header, page)
	}
}

// longPatch is a patch request of a few thousand runs on stories260K (a
// prompt of over a hundred tokens, every position, each run decoded alone
// from position 0): seconds of work, cancelled long before its end.
func longPatch() map[string]any {
	story := strings.Repeat("Once upon a time, there was a little %s who liked to play in the park with her friends. ", 4)
	return map[string]any{
		"clean":   strings.TrimSpace(fmt.Sprintf(story, "girl", "girl", "girl", "girl")),
		"corrupt": strings.TrimSpace(fmt.Sprintf(story, "boy", "boy", "boy", "boy")),
		"answer":  " She", "exact": true, "parallel": 1,
	}
}

func streamPost(t testing.TB, ctx context.Context, url string, body any) (*http.Response, *bufio.Scanner) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 64<<20)
	return res, sc
}

// event returns the next event of the stream of one of the kinds wanted.
func event(t testing.TB, sc *bufio.Scanner, want ...string) map[string]any {
	t.Helper()
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not an event: %q", sc.Text())
		}
		for _, w := range want {
			if ev["event"] == w {
				return ev
			}
		}
	}
	t.Fatalf("the stream ended before an event %v", want)
	return nil
}

// TestServeCancel checks that a client closing its request stops a long
// llama.cpp run before its end, and that the model then serves the next.
func TestServeCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lldiff serve on llama.cpp: skipped with -short")
	}
	s := startServe(t, "-t", "1")
	defer func() { s.interrupt(t); s.wait(t) }()
	ctx, cancel := context.WithCancel(context.Background())
	res, sc := streamPost(t, ctx, s.url+"/api/patch", longPatch())
	ev := event(t, sc, "progress")
	total := int(ev["total"].(float64))
	if total < 1000 {
		t.Fatalf("the long patch has %d runs: not long enough to be cancelled midway", total)
	}
	cancel()
	res.Body.Close()
	m := s.waitFor(t, `patch failed after \S+ at (\d+)/(\d+): the run was cancelled: the client closed the request`)
	done, _ := strconv.Atoi(m[1])
	if done >= total {
		t.Errorf("the cancelled run got to %d of %d runs: it was not stopped", done, total)
	}
	// the model is free and whole: a compare runs to the end
	r, body := postJSON(t, s.url+"/api/compare", map[string]any{"a": "The cat", "b": "The dog"})
	if r.StatusCode != 200 || !bytes.Contains(body, []byte(`"text": "The cat"`)) {
		t.Fatalf("after the cancel: %d %.300s", r.StatusCode, body)
	}
}

// TestServeInterrupt checks Ctrl-C: the first lets the running request
// finish and stops serve; with two, the running request is cancelled.
func TestServeInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs lldiff serve on llama.cpp: skipped with -short")
	}
	t.Run("finish", func(t *testing.T) {
		s := startServe(t, "-t", "1", "--grace", "5m")
		body := map[string]any{"clean": "Once upon a time, there was a little girl. One day,", "corrupt": "Once upon a time, there was a little boy. One day,", "answer": " she", "exact": true, "parallel": 1}
		res, sc := streamPost(t, context.Background(), s.url+"/api/patch", body)
		defer res.Body.Close()
		event(t, sc, "started")
		s.interrupt(t)
		s.waitFor(t, "stopping: the running request may finish")
		ev := event(t, sc, "result", "error")
		if ev["event"] != "result" {
			t.Fatalf("the running request got %v, want its result", ev)
		}
		s.wait(t)
		if !strings.Contains(s.log.String(), "stopped\n") {
			t.Errorf("log:\n%s", s.log.String())
		}
		if _, err := http.Get(s.url + "/"); err == nil {
			t.Error("serve still answers after it stopped")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		s := startServe(t, "-t", "1", "--grace", "5m")
		res, sc := streamPost(t, context.Background(), s.url+"/api/patch", longPatch())
		defer res.Body.Close()
		event(t, sc, "progress")
		s.interrupt(t)
		s.waitFor(t, "stopping: the running request may finish")
		s.interrupt(t)
		ev := event(t, sc, "result", "error")
		if ev["event"] != "error" || ev["status"] != 503.0 || !strings.Contains(fmt.Sprint(ev["error"]), "shutting down") {
			t.Fatalf("the running request got %v, want a 503 error: the server is shutting down", ev)
		}
		s.wait(t)
		if !strings.Contains(s.log.String(), "cancelling the running request") {
			t.Errorf("log:\n%s", s.log.String())
		}
	})
}
