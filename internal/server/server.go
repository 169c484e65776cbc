// Package server is `lldiff serve`: one loaded model behind a small HTTP
// API and a page that runs compare, patch and contrast on it and shows the
// results with the report's front-end (docs/serve.md).
//
// The server runs a model for whoever reaches it, so it is careful about
// who that is: it listens on loopback unless told otherwise (package cli
// decides), answers only requests whose Host names this machine (a DNS
// rebinding page cannot reach it), refuses cross-origin POSTs, caps bodies,
// prompts, tokens and run time, runs one analysis at a time with a bounded
// queue, and never reads or writes a file a request names.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lldiff/lldiff/models"
)

// Limits bound what one request may cost.
type Limits struct {
	// MaxBody is the largest request body in bytes.
	MaxBody int64
	// MaxPrompt is the longest prompt (and answer) text in bytes.
	MaxPrompt int
	// MaxTokens is the most prompt tokens one request may decode, all its
	// prompts together (answers included, each tokenized alone).
	MaxTokens int
	// MaxPrompts is the most prompts of a contrast request, both sets
	// together.
	MaxPrompts int
	// MaxParallel is the most sequences a request may ask to decode
	// together (patch's and contrast's --parallel).
	MaxParallel int
	// MaxRun is the longest a run may take once it has the model; it is
	// then stopped.
	MaxRun time.Duration
	// Queue is how many requests may wait while one runs; more are
	// refused with 503 and Retry-After.
	Queue int
}

// DefaultLimits are the limits of `lldiff serve` without limit flags.
func DefaultLimits() Limits {
	return Limits{
		MaxBody:     1 << 20,
		MaxPrompt:   32 << 10,
		MaxTokens:   4096,
		MaxPrompts:  1024,
		MaxParallel: 256, // llama.cpp's LLAMA_MAX_SEQ; package cli passes llamacpp.MaxSeqs
		MaxRun:      5 * time.Minute,
		Queue:       4,
	}
}

func (l Limits) check() error {
	if l.MaxBody < 1 || l.MaxPrompt < 1 || l.MaxTokens < 1 || l.MaxPrompts < 2 || l.MaxParallel < 1 || l.MaxRun <= 0 || l.Queue < 0 {
		return fmt.Errorf("server limits must be positive (the queue may be 0): %+v", l)
	}
	return nil
}

// Config configures a Server.
type Config struct {
	// Model is the model file as given on the command line: the "model" of
	// every document, as the commands write it.
	Model string
	// Engine returns the loaded model as an engine whose runs stop once
	// ctx is done (llamacpp.ContextParams.Cancel). Runs never overlap.
	Engine func(ctx context.Context) models.Engine
	// KVBytes is the KV cache's bytes per value, 4 (f32) or 2 (f16): what
	// patch sizes its parallel runs by, as the command does.
	KVBytes int
	// NCtx is the context size given to serve (-c), 0 when none: what
	// contrast checks its prompts against, as the command does.
	NCtx int
	// Listen is the address the server listens on; a Host header naming it
	// is accepted.
	Listen string
	// AllowHosts are more host names accepted in the Host header (without
	// ports). "localhost" and loopback addresses always are.
	AllowHosts []string
	// AllowRemote accepts any IP address in the Host header (a DNS
	// rebinding page sends its own host name, never an address).
	AllowRemote bool
	Limits      Limits
	// Grace is how long a running request may go on once shutdown begins
	// before it is cancelled (0: cancel at once).
	Grace time.Duration
	// Log hears one line per run and per refusal; nil hears nothing.
	Log io.Writer
}

// Server serves one loaded model. Create it with New.
type Server struct {
	cfg  Config
	mux  *http.ServeMux
	gate *gate

	// hard is the parent of every request's context: cancelling it stops
	// the running analysis (CancelRuns).
	hard       context.Context
	cancelHard context.CancelFunc

	logMu sync.Mutex
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("server: no engine")
	}
	if cfg.KVBytes == 0 {
		cfg.KVBytes = 4
	}
	if err := cfg.Limits.check(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, gate: newGate(cfg.Limits.Queue)}
	s.hard, s.cancelHard = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

// Handler returns the server's handler, host and origin checks included.
func (s *Server) Handler() http.Handler { return s.guard(s.mux) }

// HTTPServer returns an http.Server for the handler with its timeouts set:
// headers within 10 s, a body within a minute, idle connections closed
// after two minutes. Writes have no server-wide deadline: a run's stream
// sets its own (run.go).
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      0,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve answers requests on ln until ctx is done, then shuts down: it stops
// listening, refuses the queued requests (503), lets the running one
// finish for up to Config.Grace, cancels it after that (or at once on
// CancelRuns), and returns when every handler has returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := s.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.CancelRuns()
		return err
	case <-ctx.Done():
	}
	s.gate.close()
	timer := time.AfterFunc(s.cfg.Grace, s.CancelRuns)
	defer timer.Stop()
	// the running analysis stops within one graph node once cancelled, so
	// Shutdown returns soon after CancelRuns
	err := hs.Shutdown(context.Background())
	s.CancelRuns()
	if errors.Is(<-errc, http.ErrServerClosed) && err == nil {
		return nil
	}
	return err
}

// CancelRuns cancels the running and queued requests and refuses new ones.
func (s *Server) CancelRuns() {
	s.gate.close()
	s.cancelHard()
}

func (s *Server) logf(format string, a ...any) {
	if s.cfg.Log == nil {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.cfg.Log, time.Now().Format("15:04:05 ")+format+"\n", a...)
}

// guard refuses requests whose Host does not name this machine (DNS
// rebinding: a page on evil.example whose name now resolves to 127.0.0.1
// sends "Host: evil.example") and, for anything but GET and HEAD, requests
// from another origin (a page elsewhere posting a form or a fetch here).
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			s.logf("refused: Host %q", r.Host)
			httpError(w, http.StatusForbidden, fmt.Sprintf("Host %q is not this server: lldiff serve answers only requests addressed to %s, localhost or a loopback address (a page elsewhere must not drive the model); start serve with --allow-host NAME to accept another name", r.Host, s.listenHost()))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if msg := crossOrigin(r); msg != "" {
				s.logf("refused: %s", msg)
				httpError(w, http.StatusForbidden, msg)
				return
			}
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

// listenHost is the host part of the listen address, for messages.
func (s *Server) listenHost() string {
	if h, _, err := net.SplitHostPort(s.cfg.Listen); err == nil && h != "" {
		return h
	}
	return "127.0.0.1"
}

// hostAllowed reports whether a Host header names this server: localhost,
// a loopback address, the listen address's host, a --allow-host name, or
// with AllowRemote any IP address. The port is not checked: a rebinding
// page can use the right one.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() || s.cfg.AllowRemote {
			return true
		}
		if lh := net.ParseIP(strings.Trim(s.listenHost(), "[]")); lh != nil && lh.Equal(ip) {
			return true
		}
		return false
	}
	if strings.EqualFold(host, strings.Trim(s.listenHost(), "[]")) {
		return true
	}
	return slices.ContainsFunc(s.cfg.AllowHosts, func(a string) bool { return strings.EqualFold(strings.TrimSuffix(a, "."), host) })
}

// crossOrigin returns why a state-changing request comes from another
// origin, or "" when it does not: its Origin header (sent by browsers on
// every cross-origin request and on same-origin POSTs) must name the same
// scheme-less host as its Host header, and Sec-Fetch-Site, when present,
// must be same-origin or none. A request without either header is not
// from a browser page (curl) and passes.
func crossOrigin(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Sprintf("cross-origin request refused (Sec-Fetch-Site: %s): only the page served here may run the model", site)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	rest, ok := strings.CutPrefix(origin, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(origin, "https://")
	}
	if !ok || !strings.EqualFold(rest, r.Host) {
		return fmt.Sprintf("cross-origin request refused (Origin %s, Host %s): only the page served here may run the model", origin, r.Host)
	}
	return ""
}
