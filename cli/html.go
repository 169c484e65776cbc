package cli

import (
	"bufio"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/report"
)

// --html FILE writes the command's JSON document as one self-contained
// HTML page (package report, docs/report.md). It goes with the terminal
// output or --json, never instead of them. Like every output file it is
// checked before any work is done, written under a temporary name and
// renamed into place, and an existing file is replaced only with --force.

// addHTMLFlag registers --html on f, and --force when force is not nil
// (commands that already have a --force pass nil and mention --html in
// its help).
func addHTMLFlag(f *pflag.FlagSet, path *string, force *bool) {
	f.StringVar(path, "html", "", "also write a self-contained HTML report to FILE (docs/report.md)")
	if force != nil {
		f.BoolVar(force, "force", false, "replace an existing --html file")
	}
}

// checkHTMLFlag checks --html before the command does any work.
func checkHTMLFlag(path string, force bool) error {
	if path == "" {
		return nil
	}
	return checkOutFile(path, "--html", force)
}

// writeHTML writes the page of doc to path, when path is set. Commands call
// it before printing their output, and noteHTML after.
func writeHTML(path string, kind report.Kind, doc any) error {
	if path == "" {
		return nil
	}
	f, err := outfile.Create(path)
	if err != nil {
		return fmt.Errorf("--html %s: %w (choose a directory you can write to)", path, unwrapPath(err))
	}
	defer f.Abort()
	bw := bufio.NewWriter(f)
	if err := report.Write(bw, kind, doc); err != nil {
		return fmt.Errorf("--html %s: %w (nothing was written)", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("--html %s: %w (nothing was written)", path, unwrapPath(err))
	}
	// a page to share: readable by others, as a file written with
	// os.Create would be (the temporary file is created 0600)
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("--html %s: %w", path, unwrapPath(err))
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("--html: %w", err)
	}
	return nil
}

// noteHTML says where the page was written: after the terminal output, or
// on standard error with --json, so that standard output stays one JSON
// document.
func noteHTML(streams *IOStreams, jsonOut bool, path string) {
	if path == "" {
		return
	}
	var w io.Writer = streams.Out
	if jsonOut {
		w = streams.ErrOut
	}
	fmt.Fprintf(w, "wrote %s (open it in a browser)\n", path)
}
