// Command lldiff compares what happens inside a GGUF model for two prompts.
package main

import (
	"fmt"
	"os"

	"github.com/lldiff/lldiff/cli"
)

func main() {
	io := cli.SystemIO()
	root := cli.NewRootCmd(io)
	root.SetArgs(cli.NormalizeArgs(os.Args[1:]))
	err := root.Execute()
	if err != nil {
		fmt.Fprintln(io.ErrOut, "lldiff:", err)
	}
	os.Exit(cli.ExitCode(err))
}
