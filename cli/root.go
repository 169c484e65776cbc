// Package cli holds lldiff's cobra commands. Each command has an options
// struct, a newCmdX constructor that declares and checks flags, and an xRun
// function that does the work and is what the tests call.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/llamacpp"
)

// NewRootCmd returns the lldiff command tree writing to io.
func NewRootCmd(io *IOStreams) *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:   "lldiff",
		Short: "What changes inside a model when one word of the prompt changes",
		Long: `lldiff runs GGUF models through llama.cpp, captures per-layer activations
(residual stream, attention and MLP outputs) and compares them between prompts.

Hooks use TransformerLens names (blocks.3.hook_resid_post) or short forms
(resid_post.3, resid_post for every layer, resid_post.-1 for the last).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			llamacpp.SetVerbose(verbose)
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "show llama.cpp's log on stderr")
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	root.SetIn(io.In)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &UsageError{Err: err}
	})
	root.AddCommand(
		newCmdDevices(io, nil),
		newCmdInspect(io, nil),
		newCmdTokenize(io, nil),
		newCmdCapture(io, nil),
		newCmdCompare(io, nil),
		newCmdSynth(io, nil),
	)
	for _, newCmd := range extraCommands {
		root.AddCommand(newCmd(io))
	}
	return root
}

// extraCommands are commands that register themselves from their own files
// (func init() { extraCommands = append(extraCommands, ...) }), so that
// commands can be added without editing this file.
var extraCommands []func(io *IOStreams) *cobra.Command
