// Package outfile writes lldiff's outputs so that nothing the user has is
// lost and nothing half-written looks finished: a file is written to a
// temporary name beside its path and renamed over it when complete; an
// output directory is staged beside its path, locked against a second
// writer, and moved into place with its index written last. Temporary
// files and staging directories are removed on error and, once
// HandleSignals has been called, on SIGINT and SIGTERM.
package outfile

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

var (
	mu      sync.Mutex
	pending = map[*entry]struct{}{}
	once    sync.Once
)

type entry struct{ path string }

// track registers path (a temporary file or directory) for removal when
// the process is interrupted, and returns the function that unregisters it.
func track(path string) func() {
	e := &entry{path}
	mu.Lock()
	pending[e] = struct{}{}
	mu.Unlock()
	return func() {
		mu.Lock()
		delete(pending, e)
		mu.Unlock()
	}
}

// Track registers a temporary path written by another package (a GGUF
// writer, a quantizer) for removal on SIGINT/SIGTERM; call the returned
// function once the path has been renamed or removed.
func Track(path string) (untrack func()) { return track(path) }

// RemovePending removes every registered temporary path. HandleSignals
// calls it before the process exits on a signal.
func RemovePending() {
	mu.Lock()
	defer mu.Unlock()
	for e := range pending {
		os.RemoveAll(e.path)
		delete(pending, e)
	}
}

// HandleSignals makes SIGINT and SIGTERM remove the registered temporary
// paths, then exit with the shell's status for the signal (130, 143).
// Calling it more than once has no further effect.
func HandleSignals() {
	once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			s := <-ch
			RemovePending()
			code := 130
			if s == syscall.SIGTERM {
				code = 143
			}
			os.Exit(code)
		}()
	})
}
