//go:build !unix

package analysis

import "errors"

func mkfifo(string) error { return errors.New("named pipes are a Unix thing") }
