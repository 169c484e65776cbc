package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/outfile"
)

// Output paths are checked before any work is done, so that a mistake in
// one costs nothing and names the flag, and so that nothing the user has is
// replaced without --force. Files are written by renaming a finished
// temporary file over the path (models.Writer, outfile.Create), and
// directories are staged beside their path and moved into place
// (openOutDir): an interrupted or failed run leaves what was there before.
// A device such as /dev/null,
// a pipe or a directory at the path would be replaced, not written to, so
// they are refused even with --force.

// checkOutFile checks that path, given with flag, can take a new file:
// its directory exists and is writable, and path is not a directory or a
// special file, nor an existing file unless force.
func checkOutFile(path, flag string, force bool) error {
	if path == "" {
		return usageErr("%s is empty: give a file name", flag)
	}
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return usageErr("%s %s is a directory: give a file name, such as %s", flag, path, filepath.Join(path, "out"+filepath.Ext(path)))
	case err == nil && !st.Mode().IsRegular():
		return usageErr("%s %s is not a regular file (%s): give the path of a file to write", flag, path, fileKind(st.Mode()))
	case err == nil && !force:
		return fmt.Errorf("%s %s already exists: choose another name, or pass --force to replace it", flag, path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return usageErr("%s %s: %v", flag, path, unwrapPath(err))
	}
	return checkWritableDir(filepath.Dir(path), flag, path)
}

// checkWritableDir checks that dir exists and that a file can be created
// in it (a read-only directory, or one whose owner is another user).
func checkWritableDir(dir, flag, path string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usageErr("%s %s: the directory %s does not exist: create it first (mkdir -p %s) or choose another path", flag, path, dir, dir)
	case err != nil:
		return usageErr("%s %s: %v", flag, path, err)
	case !st.IsDir():
		return usageErr("%s %s: %s is not a directory", flag, path, dir)
	}
	probe, err := os.CreateTemp(dir, ".lldiff-write-test-*")
	if err != nil {
		return fmt.Errorf("%s %s: cannot write in %s (%v): choose a directory you can write to", flag, path, dir, unwrapPath(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// checkOutDir checks that dir, given with flag, can take the files of a
// command: a new directory (created by the Commit of openOutDir), or an empty one,
// or any directory with force. It creates nothing.
func checkOutDir(dir, flag string, force bool) error {
	if dir == "" {
		return usageErr("%s is empty: give a directory", flag)
	}
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// the nearest existing parent must be a directory we can write in
		parent := filepath.Dir(dir)
		for {
			pst, perr := os.Stat(parent)
			if perr == nil {
				if !pst.IsDir() {
					return usageErr("%s %s: %s is a file, not a directory: choose another path", flag, dir, parent)
				}
				return checkWritableDir(parent, flag, dir)
			}
			if !errors.Is(perr, fs.ErrNotExist) || filepath.Dir(parent) == parent {
				return usageErr("%s %s: %v", flag, dir, perr)
			}
			parent = filepath.Dir(parent)
		}
	}
	if err != nil {
		return usageErr("%s %s: %v", flag, dir, unwrapPath(err))
	}
	if !st.IsDir() {
		return usageErr("%s %s exists and is not a directory: choose a new or empty directory", flag, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 && !force {
		return fmt.Errorf("%s %s is not empty (%d entries): choose an empty or new directory, or pass --force to write into it", flag, dir, len(ents))
	}
	return checkWritableDir(dir, flag, dir)
}

// openOutDir starts writing the output directory dir (given with flag):
// its files go into a staging directory beside it, locked against a second
// lldiff writing the same path, and Commit moves them into place with
// index.json last (outfile.CreateDir). dir is checked again once the lock
// is held: another run may have filled it since checkOutDir. Call Abort
// (deferred) to remove the staged files when the run fails.
func openOutDir(dir, flag string, force bool) (*outfile.Dir, error) {
	d, err := outfile.CreateDir(dir, "index.json")
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return nil, fmt.Errorf("%s %s: cannot stage the output beside it (%v): choose a directory you can write to", flag, dir, pe.Err)
	case err != nil:
		// outfile's own errors name the directory already
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	if err := checkOutDir(dir, flag, force); err != nil {
		d.Abort()
		return nil, err
	}
	return d, nil
}

// writeStagedNpy writes a .npy file into the staging directory of out and
// returns its size in bytes, which index.json records so that a reader can
// tell a complete file from a truncated or replaced one.
func writeStagedNpy(out *outfile.Dir, name string, shape []int, data []float32) (int64, error) {
	path := out.Path(name)
	if err := writeNpy(path, shape, data); err != nil {
		return 0, fmt.Errorf("writing %s into %s: %w (nothing was changed there)", name, out.Final(), unwrapPath(err))
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if testHook != nil {
		testHook("npy written")
	}
	return st.Size(), nil
}

// writeStagedJSON writes v as the index.json of out, in its staging
// directory: Commit moves it into place last.
func writeStagedJSON(out *outfile.Dir, v any) error {
	f, err := os.Create(out.Path("index.json"))
	if err != nil {
		return err
	}
	if err := writeJSON(f, v); err != nil {
		f.Close()
		return fmt.Errorf("writing index.json into %s: %w (nothing was changed there)", out.Final(), unwrapPath(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing index.json into %s: %w (nothing was changed there)", out.Final(), unwrapPath(err))
	}
	return nil
}

// writeNpy writes a .npy file; tests replace it to make a write fail as
// a full disk would.
var writeNpy = npy.WriteFile

// testHook, when set by a test, is called at named points of a run
// ("npy written", "plot written"), where the test interrupts the process
// or starts a second writer.
var testHook func(point string)

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a plain file"
}

// unwrapPath drops the temporary file's name from a *PathError.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
