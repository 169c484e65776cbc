package cli

import (
	"encoding/json"
	"io"
	"os"
	"strings"

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
