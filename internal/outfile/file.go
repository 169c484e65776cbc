package outfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is an output file being written under a temporary name in the
// directory of its final path.
type File struct {
	*os.File
	final   string
	untrack func()
	done    bool
}

// Create opens a temporary file beside path (".NAME.tmp-*") for writing.
// Commit renames it over path; Abort (or a signal, see HandleSignals)
// removes it. Whether path may be replaced is the caller's decision, made
// before Create.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, final: path, untrack: track(f.Name())}, nil
}

// Commit flushes the file to disk, closes it and renames it to its final
// path. On error the temporary file is removed and path is untouched.
func (f *File) Commit() error {
	if f.done {
		return errors.New("outfile: Commit after Commit or Abort")
	}
	f.done = true
	defer f.untrack()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.final)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", f.final, err)
	}
	return nil
}

// Abort closes and removes the temporary file; it does nothing after
// Commit, so `defer f.Abort()` is the usual pattern.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
	f.untrack()
}

// WriteFile writes data to path through a temporary file and a rename.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}
