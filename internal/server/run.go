package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// job is one parsed request: what it decodes and how to run it.
type job struct {
	kind report.Kind
	// prompts are the texts counted against Limits.MaxTokens.
	prompts []string
	tok     models.TokenizeOptions
	// run runs the analysis on e, telling p how far it is, and returns the
	// command's JSON document.
	run func(e models.Engine, p analysis.Progress) (any, error)
}

// Causes of a cancelled run, told apart in the answer.
var (
	errTooLong  = errors.New("run time limit reached")
	errShutdown = errors.New("the server is shutting down")
)

// ndjson is the media type of a streamed answer (docs/serve.md).
const ndjson = "application/x-ndjson"

// handleRun answers POST /api/KIND: it parses the options, waits for the
// model, checks the token limit, runs the analysis and answers with the
// document: plain JSON (as the command's --json), a stream of NDJSON
// events when the request accepts application/x-ndjson, or the --html page
// with ?format=html.
func (s *Server) handleRun(parse func(*Server, []byte) (*job, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := s.readBody(w, r)
		if !ok {
			return
		}
		format := r.URL.Query().Get("format")
		stream := acceptsNDJSON(r)
		switch {
		case format != "" && format != "json" && format != "html":
			httpError(w, http.StatusBadRequest, fmt.Sprintf("format=%q: use json (the default) or html (the --html page)", format))
			return
		case format == "html" && stream:
			httpError(w, http.StatusBadRequest, "format=html is one file: ask for it without Accept: "+ndjson)
			return
		}
		j, err := parse(s, body)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		out := &answer{w: w, stream: stream}
		rc := http.NewResponseController(w)
		// the write deadline covers the wait and the run, so a client that
		// stops reading cannot hold the connection longer (the read
		// deadline of ReadTimeout ends with the body: net/http clears it
		// when it starts watching for the client leaving)
		_ = rc.SetWriteDeadline(time.Now().Add(time.Duration(s.cfg.Limits.Queue+1)*s.cfg.Limits.MaxRun + time.Minute))

		ctx, cancel := context.WithCancelCause(r.Context())
		defer cancel(nil)
		stop := context.AfterFunc(s.hard, func() { cancel(errShutdown) })
		defer stop()
		err = s.gate.enter(ctx, func(pos int) { out.event(map[string]any{"event": "queued", "position": pos}) })
		if err != nil {
			s.refuse(out, r, err)
			return
		}
		start := time.Now()
		defer func() { s.gate.leave(time.Since(start)) }()
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.Limits.MaxRun + time.Minute))
		out.event(map[string]any{"event": "started"})

		runCtx, cancelRun := context.WithTimeoutCause(ctx, s.cfg.Limits.MaxRun, errTooLong)
		defer cancelRun()
		e := &cancelEngine{Engine: s.cfg.Engine(runCtx), ctx: runCtx}
		if err := s.checkTokens(e, j); err != nil {
			out.fail(http.StatusBadRequest, err.Error())
			s.logf("%s refused: %v", j.kind, err)
			return
		}
		prog := &progress{out: out}
		doc, err := j.run(e, prog)
		d := time.Since(start).Round(time.Millisecond)
		if err != nil {
			status, msg := s.runError(runCtx, err)
			s.logf("%s failed after %s%s: %s", j.kind, d, prog.where(), msg)
			out.fail(status, msg)
			return
		}
		s.logf("%s done in %s", j.kind, d)
		if format == "html" {
			var b bytes.Buffer
			if err := report.Write(&b, j.kind, doc); err != nil {
				httpError(w, http.StatusInternalServerError, err.Error())
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", string(j.kind)+".html"))
			_, _ = w.Write(b.Bytes())
			return
		}
		out.result(doc)
	}
}

// readBody reads a JSON request body of at most Limits.MaxBody bytes, or
// answers with the error and returns false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	return s.readBodyLimit(w, r, s.cfg.Limits.MaxBody)
}

// readBodyLimit reads a POSTed JSON body of at most limit bytes, or answers
// with the error and returns false.
func (s *Server) readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": use POST with a JSON body")
		return nil, false
	}
	// a form posted from another page cannot have this type, and a
	// cross-origin fetch with it needs a preflight this server never allows
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send the options as JSON with Content-Type: application/json", r.Header.Get("Content-Type")))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than the server's limit of %d bytes (--max-body for runs)", mb.Limit))
			return nil, false
		}
		httpError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// checkTokens refuses a request whose prompts tokenize to more than
// Limits.MaxTokens tokens together.
func (s *Server) checkTokens(e models.Engine, j *job) error {
	n := 0
	for _, p := range j.prompts {
		ids, err := e.Tokenize(p, j.tok)
		if err != nil {
			return err
		}
		n += len(ids)
	}
	if n > s.cfg.Limits.MaxTokens {
		return fmt.Errorf("the prompts of this request have %d tokens together, more than the server's limit of %d (--max-tokens): send fewer or shorter prompts", n, s.cfg.Limits.MaxTokens)
	}
	return nil
}

// refuse answers a request that did not get the model.
func (s *Server) refuse(out *answer, r *http.Request, err error) {
	switch {
	case errors.Is(err, errBusy):
		ra := s.gate.retryAfter()
		s.logf("refused %s: busy", r.URL.Path)
		out.w.Header().Set("Retry-After", strconv.Itoa(ra))
		out.fail(http.StatusServiceUnavailable, fmt.Sprintf("the model is busy: one run and %d queued requests are ahead (--queue %d); retry in %d s", s.cfg.Limits.Queue, s.cfg.Limits.Queue, ra))
	case errors.Is(err, errClosing), errors.Is(err, errShutdown):
		out.fail(http.StatusServiceUnavailable, "the server is shutting down")
	default:
		s.logf("%s: the client left while queued", r.URL.Path)
		out.fail(499, "the request was cancelled while queued")
	}
}

// runError maps a failed run to a status and a message.
func (s *Server) runError(ctx context.Context, err error) (int, string) {
	if ctx.Err() != nil {
		switch cause := context.Cause(ctx); {
		case s.hard.Err() != nil:
			return http.StatusServiceUnavailable, "the run was cancelled: the server is shutting down"
		case errors.Is(cause, errTooLong):
			return http.StatusServiceUnavailable, fmt.Sprintf("the run was stopped after %s, the server's limit (--max-run): ask for less (fewer layers, kinds or positions) or restart serve with a larger --max-run", s.cfg.Limits.MaxRun)
		case errors.Is(cause, errShutdown):
			return http.StatusServiceUnavailable, "the run was cancelled: the server is shutting down"
		default:
			return 499, "the run was cancelled: the client closed the request"
		}
	}
	var ie *analysis.InputError
	if errors.As(err, &ie) {
		return http.StatusBadRequest, err.Error()
	}
	var ce *models.ContextError
	if errors.As(err, &ce) {
		return http.StatusBadRequest, strings.Replace(err.Error(), ce.Error(), ce.Error()+": send a shorter prompt, or restart serve with a larger -c", 1)
	}
	return http.StatusInternalServerError, err.Error()
}

// answer writes a run's answer: one JSON document or error, or a stream
// of NDJSON events (docs/serve.md). Only the handler's goroutine writes.
type answer struct {
	w      http.ResponseWriter
	stream bool
	mu     sync.Mutex
	began  bool // the stream's 200 and headers are sent
}

// event writes one line of the stream; without a stream it does nothing.
func (a *answer) event(v any) {
	if !a.stream {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.began {
		a.w.Header().Set("Content-Type", ndjson)
		a.w.Header().Set("Cache-Control", "no-store")
		a.w.Header().Set("X-Accel-Buffering", "no")
		a.w.WriteHeader(http.StatusOK)
		a.began = true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	// a failed write means the client left: the request's context is
	// cancelled and the run stops
	if _, err := a.w.Write(append(b, '\n')); err == nil {
		_ = http.NewResponseController(a.w).Flush()
	}
}

// fail answers with an error: a status and {"error": msg}, or an error
// event once the stream has begun.
func (a *answer) fail(status int, msg string) {
	a.mu.Lock()
	began := a.began
	a.mu.Unlock()
	if a.stream && began {
		a.event(map[string]any{"event": "error", "status": status, "error": msg})
		return
	}
	httpError(a.w, status, msg)
}

// result answers with the document: as the command's --json prints it, or
// as the last event of the stream.
func (a *answer) result(doc any) {
	if a.stream {
		a.event(map[string]any{"event": "result", "document": doc})
		return
	}
	a.w.Header().Set("Content-Type", "application/json")
	_ = writeJSON(a.w, doc)
}

// writeJSON encodes v as the commands' --json does (cli.writeJSON): two
// spaces of indent, no HTML escaping, a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// httpError answers with status and {"error": msg}.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func acceptsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == ndjson {
			return true
		}
	}
	return false
}

// progress streams an analysis's progress as events, at most ten a second
// (and always the first and the last).
type progress struct {
	out   *answer
	total int
	done  int
	last  time.Time
}

// where says how far the run got, for the log: " at 3/40", or "".
func (p *progress) where() string {
	if p.total == 0 {
		return ""
	}
	return fmt.Sprintf(" at %d/%d", p.done, p.total)
}

func (p *progress) Start(total int) {
	p.total = total
	p.last = time.Now()
	p.out.event(map[string]any{"event": "progress", "done": 0, "total": total})
}

func (p *progress) Update(done int) {
	p.done = done
	if done < p.total && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.out.event(map[string]any{"event": "progress", "done": done, "total": p.total})
}

func (p *progress) Done() {}

// cancelEngine is an engine whose runners refuse to start a decode once
// ctx is done: every engine stops between the calls of an analysis (each
// group of prompts), and llama.cpp's also within a call (its engine
// watches the same ctx, ContextParams.Cancel).
type cancelEngine struct {
	models.Engine
	ctx context.Context
}

func (e *cancelEngine) check() error {
	if e.ctx.Err() != nil {
		return fmt.Errorf("stopped: %w", context.Cause(e.ctx))
	}
	return nil
}

func (e *cancelEngine) NewRunner(seqs [][]int32, nSeq int) (models.Runner, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	r, err := e.Engine.NewRunner(seqs, nSeq)
	if err != nil {
		return nil, err
	}
	return &cancelRunner{Runner: r, e: e}, nil
}

type cancelRunner struct {
	models.Runner
	e *cancelEngine
}

func (r *cancelRunner) Run(seqs [][]int32, hooks []models.Hook) ([]*models.Cache, error) {
	if err := r.e.check(); err != nil {
		return nil, err
	}
	return r.Runner.Run(seqs, hooks)
}

func (r *cancelRunner) RunRows(seqs [][]int32, pos [][]int, hooks []models.Hook) ([]*models.SeqRows, error) {
	if err := r.e.check(); err != nil {
		return nil, err
	}
	return r.Runner.RunRows(seqs, pos, hooks)
}

func (r *cancelRunner) Patch(base []int32, variants [][]models.Patch, o models.PatchOptions) (*models.PatchResult, error) {
	if err := r.e.check(); err != nil {
		return nil, err
	}
	return r.Runner.Patch(base, variants, o)
}
