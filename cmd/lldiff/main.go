// Command lldiff compares what happens inside a GGUF model for two prompts.
package main

import (
	"github.com/lldiff/lldiff/internal/outfile"

	"os"

	"github.com/lldiff/lldiff/cli"
)

func main() {
	// Ctrl-C and SIGTERM remove half-written outputs before exiting.
	outfile.HandleSignals()
	io := cli.SystemIO()
	root := cli.NewRootCmd(io)
	root.SetArgs(cli.NormalizeArgs(os.Args[1:]))
	err := root.Execute()
	if err != nil {
		cli.PrintError(io.ErrOut, err)
	}
	os.Exit(cli.ExitCode(err))
}
