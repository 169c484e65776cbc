package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/internal/server"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// ServeOptions are the options of `lldiff serve`.
type ServeOptions struct {
	IO          *IOStreams
	Model       modelFlags
	Listen      string
	AllowRemote bool
	AllowHosts  []string
	Limits      server.Limits
	Grace       time.Duration
	// Signals, when set, replaces SIGINT and SIGTERM as what stops the
	// server (tests); the first stops it gently, the second cancels the
	// running request.
	Signals <-chan os.Signal
	// Ready, when set, hears the address the server listens on.
	Ready func(addr string)
}

func newCmdServe(io *IOStreams, runF func(*ServeOptions) error) *cobra.Command {
	opts := &ServeOptions{IO: io, Limits: server.DefaultLimits()}
	opts.Limits.MaxParallel = llamacpp.MaxSeqs
	cmd := &cobra.Command{
		Use:   "serve -m MODEL [--listen 127.0.0.1:8080]",
		Short: "Serve a page and an HTTP API that run compare, patch and contrast on one loaded model",
		Long: `Load the model once and serve, on http://127.0.0.1:8080/ by default:

  GET  /               a page with forms for compare, patch and contrast that
                       shows progress, can cancel a run, and draws the result
                       as the --html report does (and downloads it)
  POST /api/compare    the options of lldiff compare as JSON, named as the
  POST /api/patch      flags ({"a": "...", "b": "...", "top-k": 5}); the
  POST /api/contrast   answer is the command's --json document

Send Accept: application/x-ndjson for a stream of queue and progress
events ending in the document; closing the request cancels the run.
docs/serve.md has the API, the limits and the security model.

The server runs the model for whoever reaches it: it listens on loopback
unless --listen names another address and --allow-remote says so, answers
only requests addressed to this machine's names (a Host check against DNS
rebinding), refuses cross-origin POSTs, and never reads or writes a file a
request names. One run at a time; --queue more wait, others get 503.
Ctrl-C stops the server after the running request (at most --grace), a
second Ctrl-C cancels that request.`,
		Example: `  lldiff serve -m stories260K.gguf
  curl -s localhost:8080/api/compare -H 'Content-Type: application/json' \
    -d '{"a": "The cat sat", "b": "The dog sat"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Model.check(); err != nil {
				return err
			}
			opts.Model.warnLimits(io)
			if err := checkListen(opts); err != nil {
				return err
			}
			l := opts.Limits
			if l.MaxBody < 1 || l.MaxPrompt < 1 || l.MaxTokens < 1 || l.MaxPrompts < 2 || l.MaxRun <= 0 || l.Queue < 0 || opts.Grace < 0 {
				return usageErr("--max-body, --max-prompt, --max-tokens and --max-run take values > 0, --max-prompts >= 2, --queue and --grace >= 0")
			}
			if runF != nil {
				return runF(opts)
			}
			return serveRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:8080", "address to listen on, HOST:PORT (port 0 picks a free one)")
	f.BoolVar(&opts.AllowRemote, "allow-remote", false, "allow a --listen address other than loopback: anyone who reaches it can run the model")
	f.StringArrayVar(&opts.AllowHosts, "allow-host", nil, "also accept requests addressed to this host name (repeatable)")
	f.Int64Var(&opts.Limits.MaxBody, "max-body", opts.Limits.MaxBody, "largest request body in bytes")
	f.IntVar(&opts.Limits.MaxPrompt, "max-prompt", opts.Limits.MaxPrompt, "longest prompt or answer in bytes")
	f.IntVar(&opts.Limits.MaxTokens, "max-tokens", opts.Limits.MaxTokens, "most prompt tokens per request, all prompts together")
	f.IntVar(&opts.Limits.MaxPrompts, "max-prompts", opts.Limits.MaxPrompts, "most prompts per contrast request")
	f.DurationVar(&opts.Limits.MaxRun, "max-run", opts.Limits.MaxRun, "longest a run may take; it is then stopped")
	f.IntVar(&opts.Limits.Queue, "queue", opts.Limits.Queue, "requests that may wait while one runs; more get 503 with Retry-After")
	f.DurationVar(&opts.Grace, "grace", 30*time.Second, "on Ctrl-C, how long the running request may finish before it is cancelled")
	return cmd
}

// checkListen refuses a --listen that is not HOST:PORT, and one that is not
// a loopback address without --allow-remote; with it, it warns.
func checkListen(opts *ServeOptions) error {
	host, port, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return usageErr("--listen %q: give HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080", opts.Listen)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return usageErr("--listen %q: %q is not a port", opts.Listen, port)
	}
	if loopbackHost(host) {
		return nil
	}
	if !opts.AllowRemote {
		name := host
		if name == "" {
			name = "every interface"
		}
		return usageErr("--listen %s would serve on %s, not only this machine: anyone who reaches it could run the model. Add --allow-remote to mean it, or listen on 127.0.0.1", opts.Listen, name)
	}
	fmt.Fprintf(opts.IO.ErrOut, "warning: listening on %s with --allow-remote: anyone who can reach this address can run the model (there is no authentication)\n", opts.Listen)
	return nil
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func serveRun(opts *ServeOptions) error {
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	kvBytes := 4
	if strings.ToLower(opts.Model.KVType) == "f16" {
		kvBytes = 2
	}
	mf := opts.Model
	s, err := server.New(server.Config{
		Model: mf.Model,
		// the engine of modelFlags.engine, whose runs stop with ctx
		Engine: func(ctx context.Context) models.Engine {
			return llamacpp.NewEngine(m, llamacpp.EngineParams{
				Context: llamacpp.ContextParams{NCtx: mf.NCtx, NBatch: mf.NBatch, NUBatch: mf.NUBatch, Threads: mf.Threads, KVType: mf.KVType, Cancel: ctx},
				Unembed: llamacpp.UnembedOptions{Threads: mf.Threads, GPU: m.GPULayers() > 0, NoMmap: mf.NoMmap},
			})
		},
		KVBytes: kvBytes, NCtx: mf.NCtx, Listen: opts.Listen, AllowHosts: opts.AllowHosts, AllowRemote: opts.AllowRemote,
		Limits: opts.Limits, Grace: opts.Grace, Log: opts.IO.ErrOut,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w (is another server on that port? pick another with --listen 127.0.0.1:PORT)", opts.Listen, err)
	}
	sigs := opts.Signals
	if sigs == nil {
		// outfile.HandleSignals (cmd/lldiff) would exit at once on Ctrl-C;
		// serve writes no files and shuts down by itself instead
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(ch)
		sigs = ch
	}
	// the signals are watched before the address is printed: whoever
	// reads it may stop the server at once
	addr := ln.Addr().String()
	fmt.Fprintf(opts.IO.ErrOut, "serving %s on http://%s/ (Ctrl-C stops)\n", mf.Model, addr)
	if opts.Ready != nil {
		opts.Ready(addr)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		fmt.Fprintf(opts.IO.ErrOut, "stopping: the running request may finish within %s; Ctrl-C again cancels it\n", opts.Grace)
		stop()
		select {
		case <-sigs:
			fmt.Fprintln(opts.IO.ErrOut, "cancelling the running request")
			s.CancelRuns()
		case <-done:
		}
	}()
	if err := s.Serve(ctx, ln); err != nil {
		return err
	}
	fmt.Fprintln(opts.IO.ErrOut, "stopped")
	return nil
}
