package outfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dir is an output directory being written: its files go into a staging
// directory beside it (".NAME.tmp-*"), and Commit moves them into place.
// While a Dir is open, a lock beside the directory makes a second writer
// of the same path fail at CreateDir instead of mixing its files in.
type Dir struct {
	final   string
	stage   string
	index   string
	lock    *lock
	untrack func()
	done    bool
}

// CreateDir starts writing the directory final. index is the name of the
// file that marks the directory complete (index.json): Commit writes it
// last, and into an existing directory it first removes the old one, so
// that an interrupted Commit leaves no index over a mix of old and new
// files. Whether final may be written into (new, empty, or --force) is the
// caller's decision, made before CreateDir; files already in final that
// the new output does not have are kept.
func CreateDir(final, index string) (*Dir, error) {
	abs, err := filepath.Abs(final)
	if err != nil {
		return nil, err
	}
	// Stage in the nearest existing ancestor, so that a new nested output
	// path leaves no empty parents behind when the run fails.
	anc := filepath.Dir(abs)
	for {
		if st, err := os.Stat(anc); err == nil && st.IsDir() {
			break
		}
		if filepath.Dir(anc) == anc {
			return nil, fmt.Errorf("%s: no existing parent directory", final)
		}
		anc = filepath.Dir(anc)
	}
	rel, err := filepath.Rel(anc, abs)
	if err != nil {
		return nil, err
	}
	flat := strings.ReplaceAll(rel, string(filepath.Separator), "_")
	l, err := acquire(filepath.Join(anc, "."+flat+".lldiff-lock"), final)
	if err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(anc, "."+flat+".tmp-*")
	if err != nil {
		l.release()
		return nil, err
	}
	return &Dir{final: final, stage: stage, index: index, lock: l, untrack: track(stage)}, nil
}

// Path returns where to write the file name of the directory.
func (d *Dir) Path(name string) string { return filepath.Join(d.stage, name) }

// Final returns the directory's final path.
func (d *Dir) Final() string { return d.final }

// Commit moves the staged files into the final directory: in one rename
// when it does not exist yet (or is empty); else the old index is removed
// first, every other file is renamed over its namesake, and the index comes
// last. On error the staged files are removed and the error says what state
// the directory is in.
func (d *Dir) Commit() error {
	if d.done {
		return errors.New("outfile: Commit after Commit or Abort")
	}
	d.done = true
	defer d.cleanup()
	if err := os.MkdirAll(filepath.Dir(d.final), 0o755); err != nil {
		return err
	}
	if err := os.Rename(d.stage, d.final); err == nil {
		return nil
	} else if st, serr := os.Stat(d.final); serr != nil || !st.IsDir() {
		return fmt.Errorf("moving the output into %s: %w", d.final, err)
	}
	// d.final is a non-empty directory (written into with --force).
	if err := os.Remove(filepath.Join(d.final, d.index)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replacing %s: %w (the directory is unchanged)", filepath.Join(d.final, d.index), err)
	}
	ents, err := os.ReadDir(d.stage)
	if err != nil {
		return err
	}
	hasIndex := false
	for _, e := range ents {
		if e.Name() == d.index {
			hasIndex = true
			continue
		}
		if err := replace(filepath.Join(d.stage, e.Name()), filepath.Join(d.final, e.Name())); err != nil {
			return fmt.Errorf("moving %s into %s: %w (%s has no %s now: it is incomplete; run again)", e.Name(), d.final, err, d.final, d.index)
		}
	}
	if hasIndex {
		if err := os.Rename(filepath.Join(d.stage, d.index), filepath.Join(d.final, d.index)); err != nil {
			return fmt.Errorf("writing %s: %w (%s is incomplete; run again)", filepath.Join(d.final, d.index), err, d.final)
		}
	}
	return nil
}

// replace renames src over dst; a directory at dst is removed first.
func replace(src, dst string) error {
	if st, err := os.Lstat(dst); err == nil && st.IsDir() {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	return os.Rename(src, dst)
}

// Abort removes the staged files and releases the lock; it does nothing
// after Commit, so `defer d.Abort()` is the usual pattern.
func (d *Dir) Abort() {
	if d.done {
		return
	}
	d.done = true
	d.cleanup()
}

func (d *Dir) cleanup() {
	os.RemoveAll(d.stage)
	d.untrack()
	d.lock.release()
}
