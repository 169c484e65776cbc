package cli

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/lldiff/lldiff/internal/npy"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
)

// streamedCapture is what streamCapture wrote.
type streamedCapture struct {
	// files are the index entries, in the order of the hooks
	files []CaptureFile
	// last holds the last row of each hook, for the summary table
	last map[models.Hook][]float32
	// nonFinite, when not nil, holds for each hook with a NaN or an
	// infinity that value at its row and column and zeros in the rows
	// before: a cache that analysis.CheckFinite reads as the whole
	// capture's (it looks for the first non-finite value only)
	nonFinite *models.Cache
}

// writeNpyRows appends rows to a .npy file being streamed; tests replace
// it to make a write fail as a full disk would.
var writeNpyRows = streamNpyRows

func streamNpyRows(w *npy.Writer, rows []float32) error { return w.Write(rows) }

// streamCapture decodes ids on ctx capturing hooks and writes each hook's
// rows to its .npy file in the staging directory of out one ubatch at a
// time (Context.Stream): the header with the final shape first (the row
// count is the token count), then the rows as they are computed. Memory
// for rows is one ubatch's, whatever the prompt's length. On error the
// files are left to out.Abort, which removes the staging directory.
func streamCapture(out *outfile.Dir, ctx *llamacpp.Context, ids []int32, nLayer int, hooks []models.Hook) (*streamedCapture, error) {
	type stream struct {
		name  string
		f     *os.File
		w     *npy.Writer
		shape []int
		bad   bool
	}
	streams := make([]*stream, len(hooks))
	defer func() {
		for _, s := range streams {
			if s != nil && s.f != nil {
				s.f.Close()
			}
		}
	}()
	sc := &streamedCapture{last: map[models.Hook][]float32{}}
	n := len(ids)
	written := false
	err := ctx.Stream(ids, hooks, func(hi, pos0, width int, rows []float32) error {
		h := hooks[hi]
		s := streams[hi]
		if s == nil {
			s = &stream{name: h.Name() + ".npy", shape: []int{n, width}}
			f, err := os.Create(out.Path(s.name))
			if err != nil {
				return fmt.Errorf("writing %s into %s: %w (nothing was changed there)", s.name, out.Final(), unwrapPath(err))
			}
			s.f = f
			streams[hi] = s
			if s.w, err = npy.NewWriter(f, s.shape); err != nil {
				return fmt.Errorf("writing %s into %s: %w (nothing was changed there)", s.name, out.Final(), unwrapPath(err))
			}
		}
		if width != s.shape[1] {
			return fmt.Errorf("internal error: %s changed width from %d to %d between ubatches", h.Name(), s.shape[1], width)
		}
		if err := writeNpyRows(s.w, rows); err != nil {
			return fmt.Errorf("writing %s into %s: %w (nothing was changed there)", s.name, out.Final(), unwrapPath(err))
		}
		if !s.bad {
			if i := slices.IndexFunc(rows, func(v float32) bool { return v != v || math.IsInf(float64(v), 0) }); i >= 0 {
				s.bad = true
				if sc.nonFinite == nil {
					sc.nonFinite = models.NewCache(ids, nLayer)
				}
				row, col := pos0+i/width, i%width
				data := make([]float32, (row+1)*width)
				data[row*width+col] = rows[i]
				sc.nonFinite.Set(&models.Activation{Hook: h, Width: width, Data: data})
			}
		}
		if k := len(rows) / width; pos0+k == n {
			sc.last[h] = slices.Clone(rows[(k-1)*width:])
		}
		if !written {
			written = true
			if testHook != nil {
				testHook("npy written")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, h := range hooks {
		s := streams[i]
		if s == nil {
			return nil, fmt.Errorf("internal error: %s was not captured", h.Name())
		}
		if err := s.w.Done(); err != nil {
			return nil, fmt.Errorf("internal error: %s: %w", s.name, err)
		}
		err := s.f.Close()
		s.f = nil
		if err != nil {
			return nil, fmt.Errorf("writing %s into %s: %w (nothing was changed there)", s.name, out.Final(), unwrapPath(err))
		}
		st, err := os.Stat(out.Path(s.name))
		if err != nil {
			return nil, err
		}
		if want := npy.FileSize(s.shape); st.Size() != want {
			return nil, errors.New("internal error: " + s.name + " has the wrong size")
		}
		sc.files = append(sc.files, CaptureFile{File: s.name, Hook: h.Name(), Kind: string(h.Kind), Layer: h.Layer, Shape: s.shape, Bytes: st.Size()})
	}
	return sc, nil
}
