//go:build unix

package analysis

import "syscall"

// mkfifo makes a named pipe, which blocks whoever opens it for reading.
func mkfifo(path string) error { return syscall.Mkfifo(path, 0o644) }
