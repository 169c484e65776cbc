package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lldiff/lldiff/internal/safetext"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/models"
)

// Exit codes, decided in one place (ExitCode).
const (
	ExitOK    = 0
	ExitError = 1 // the command failed: bad model, bad input, llama.cpp error
	ExitUsage = 2 // bad flags or arguments
)

// UsageError is a mistake in flags or arguments.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErr(format string, a ...any) error {
	return &UsageError{Err: fmt.Errorf(format, a...)}
}

// ExitCode maps an error to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var u *UsageError
	if errors.As(err, &u) {
		return ExitUsage
	}
	return ExitError
}

// PrintError prints err as lldiff reports a failure, "lldiff: " and the
// message, escaped: messages quote paths, names and text from files.
func PrintError(w io.Writer, err error) {
	fmt.Fprintln(w, "lldiff:", safetext.Lines(err.Error()))
}

// flagAdvice turns the typed errors of the analyses and engines into the
// command line's terms: an analysis.InputError is a usage error, and a
// models.ContextError gets the flags (-c) that change it. Other errors
// pass unchanged.
func flagAdvice(err error) error {
	if err == nil {
		return nil
	}
	var ce *models.ContextError
	if errors.As(err, &ce) {
		var advice string
		switch ce.Problem {
		case models.PastLearnedPositions:
			advice = ce.Error() + ": shorten the prompt"
		case models.PastTrainedContext:
			advice = fmt.Sprintf("%s: shorten the prompt, or pass -c %d to run past the trained context anyway", ce.Error(), models.RoundCtx(ce.Tokens))
		default:
			advice = fmt.Sprintf("a prompt has %d tokens but the context holds %d (-c %d): pass -c %d or a shorter prompt", ce.Tokens, ce.NCtx, ce.NCtx, models.RoundCtx(ce.Tokens))
		}
		// keep what the analysis said around it
		err = &advised{msg: strings.Replace(err.Error(), ce.Error(), advice, 1), err: err}
	}
	var ie *analysis.InputError
	if errors.As(err, &ie) {
		return &UsageError{Err: err}
	}
	return err
}

// advised is an error whose message gives advice about flags.
type advised struct {
	msg string
	err error
}

func (e *advised) Error() string { return e.msg }
func (e *advised) Unwrap() error { return e.err }
