// Package cli holds lldiff's cobra commands. Each command has an options
// struct, a newCmdX constructor that declares and checks flags, and an xRun
// function that does the work and is what the tests call.
package cli

import (
	"fmt"
	"strings"

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
	root.AddCommand(commands(io)...)
	// The root runs (it prints the help) so that cobra checks its
	// arguments here, where an unknown command becomes a usage error.
	root.RunE = func(c *cobra.Command, args []string) error { return c.Help() }
	root.SuggestionsMinimumDistance = 2
	root.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		hint := ""
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
		}
		return usageErr("unknown command %q%s: the commands are %s; lldiff --help says what each does", args[0], hint, strings.Join(names, ", "))
	}
	for _, c := range root.Commands() {
		usageArgs(c)
	}
	return root
}

// usageArgs makes a wrong number of arguments a usage error that shows the
// command's usage line: cobra's own errors exit like a failed run and say
// "unknown command" for an argument a command does not take.
func usageArgs(c *cobra.Command) {
	check := c.Args
	if check == nil {
		return
	}
	c.Args = func(c *cobra.Command, args []string) error {
		err := check(c, args)
		if err == nil {
			return nil
		}
		msg := err.Error()
		if strings.HasPrefix(msg, "unknown command") {
			msg = fmt.Sprintf("%s takes no arguments, got %q (values go with their flags; quote text with spaces)", c.CommandPath(), strings.Join(args, " "))
		}
		return usageErr("%s; usage: %s", msg, strings.TrimSuffix(c.UseLine(), " [flags]"))
	}
}

// multiDashFlags are llama.cpp's flags of several letters after a single
// dash; pflag would read -ngl as -n -g -l.
var multiDashFlags = []string{"-ngl", "-np"}

// NormalizeArgs rewrites llama.cpp's single-dash long flags (-ngl 999,
// -np 4) as the double-dash flags lldiff declares, up to a "--".
func NormalizeArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i, a := range out {
		if a == "--" {
			break
		}
		for _, f := range multiDashFlags {
			if a == f || strings.HasPrefix(a, f+"=") {
				out[i] = "-" + a
			}
		}
	}
	return out
}
