package cli

import (
	"fmt"
	"strings"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/llamacpp"
)

// checkPosFlag refuses a --pos that would silently mean something else:
// an empty value (which the parsers take as their default) and "-0" (the
// first token, not the last).
func checkPosFlag(pos string) error {
	if strings.TrimSpace(pos) == "" {
		return usageErr("--pos is empty: give last, all, or positions such as -1 or 0,3")
	}
	if err := analysis.CheckPosSpec(pos); err != nil {
		return &UsageError{Err: err}
	}
	return nil
}

// warnLimits clamps flags that the machine cannot honour and says so on
// the error stream: more threads than CPUs only wait for one another
// (ggml's threads spin at every barrier: -t 512 on 2 cores takes minutes
// where -t 2 takes a second).
func (f *modelFlags) warnLimits(io *IOStreams) {
	if n, clamped := llamacpp.ClampThreads(f.Threads); clamped {
		fmt.Fprintf(io.ErrOut, "warning: -t %d is more threads than this machine's %d CPUs, which would only wait for one another: using %d\n", f.Threads, llamacpp.CPUs(), n)
		f.Threads = n
	}
}
