//go:build unix

package outfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lock is an exclusive advisory lock (flock) on a file beside an output.
type lock struct {
	f       *os.File
	path    string
	untrack func()
}

func acquire(path, what string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", what, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another lldiff"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
				who = fmt.Sprintf("another lldiff (pid %d)", pid)
			}
			return nil, fmt.Errorf("%s is writing %s: wait for it to finish, or choose another output", who, what)
		}
		return nil, fmt.Errorf("locking %s: %w", what, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &lock{f: f, path: path, untrack: track(path)}, nil
}

func (l *lock) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
	l.untrack()
}
