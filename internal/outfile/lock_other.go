//go:build !unix

package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// lock is a lock file created exclusively beside an output (no flock here:
// a lock left by a killed process must be removed by hand).
type lock struct {
	path    string
	untrack func()
}

func acquire(path, what string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("another lldiff is writing %s (lock %s): wait for it to finish, or remove the lock if no lldiff runs", what, path)
	}
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", what, err)
	}
	f.Close()
	return &lock{path: path, untrack: track(path)}, nil
}

func (l *lock) release() {
	if l != nil && l.path != "" {
		os.Remove(l.path)
		l.path = ""
		l.untrack()
	}
}
