package analysis

import "fmt"

// InputError is a mistake in an analysis's input: options that do not fit
// the model or the prompts (an empty answer, a position outside the
// prompt, a prompt without tokens). Package cli reports it as a usage
// error.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, a ...any) error {
	return &InputError{Err: fmt.Errorf(format, a...)}
}
