package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"golang.org/x/term"
)

// IOStreams are a command's input and outputs. IsTerminal says whether Out
// is a terminal: tables and progress for people, plain tab-separated text
// otherwise.
type IOStreams struct {
	In         io.Reader
	Out        io.Writer
	ErrOut     io.Writer
	IsTerminal bool
}

// SystemIO returns the process's streams.
func SystemIO() *IOStreams {
	return &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, IsTerminal: isTerminal(os.Stdout)}
}

// isTerminal asks the terminal driver (a character device such as
// /dev/null is not a terminal).
func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table prints rows under a header: a boxed table on a terminal,
// tab-separated lines otherwise.
func table(io *IOStreams, header []string, rows [][]string) error {
	if !io.IsTerminal {
		if _, err := io.Out.Write([]byte(strings.Join(header, "\t") + "\n")); err != nil {
			return err
		}
		for _, r := range rows {
			if _, err := io.Out.Write([]byte(strings.Join(r, "\t") + "\n")); err != nil {
				return err
			}
		}
		return nil
	}
	t := tablewriter.NewTable(io.Out,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{Symbols: tw.NewSymbols(tw.StyleLight)})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithRowAlignment(tw.AlignLeft),
	)
	h := make([]any, len(header))
	for i, s := range header {
		h[i] = s
	}
	t.Header(h...)
	for _, r := range rows {
		if err := t.Append(r); err != nil {
			return err
		}
	}
	return t.Render()
}

// progress reports how far a long analysis is on a terminal's error
// stream: "decoding 3/40 prompts (12.5 prompts/s)". It is the one
// analysis.Progress of the command line; off a terminal it prints
// nothing. With keep, the last line stays (ending in a newline when the
// total is reached); otherwise Done erases it.
type progress struct {
	io     *IOStreams
	format string // with %d done and %d total
	keep   bool
	n      int
	t0     time.Time
	shown  bool
}

func newProgress(io *IOStreams, format string, keep bool) *progress {
	return &progress{io: io, format: format, keep: keep, t0: time.Now()}
}

// Start begins counting towards total.
func (p *progress) Start(total int) { p.n, p.t0 = total, time.Now() }

// Update shows done of the total.
func (p *progress) Update(done int) {
	if !p.io.IsTerminal {
		return
	}
	fmt.Fprintf(p.io.ErrOut, "\r"+p.format, done, p.n)
	if p.keep {
		if done == p.n {
			fmt.Fprintln(p.io.ErrOut)
		}
		return
	}
	rate := float64(done) / max(time.Since(p.t0).Seconds(), 1e-9)
	unit := p.format[strings.LastIndex(p.format, " ")+1:]
	fmt.Fprintf(p.io.ErrOut, " (%.1f %s/s)", rate, unit)
	p.shown = true
}

// Done erases the line unless keep.
func (p *progress) Done() {
	if p.shown {
		fmt.Fprint(p.io.ErrOut, "\r\033[K")
		p.shown = false
	}
}
