package cli

import (
	"errors"
	"fmt"
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
