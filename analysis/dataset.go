package analysis

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/internal/safetensors"
	"github.com/lldiff/lldiff/models"
)

// An activation dataset is a directory (docs/cluster.md, "Activation
// datasets"):
//
//	shard-00000.safetensors   one F32 tensor [rows, width] per hook, named
//	shard-00001.safetensors   as the hook (blocks.3.hook_resid_post), and
//	...                       per row token_ids (I32), prompt (I64, the
//	                          prompt's index in the file) and position (I32)
//	index.json                DatasetIndex: model, hooks, files, and every
//	                          prompt with its tokens, file and row offset
//
// Rows are the chosen positions of each prompt, prompt after prompt.
const (
	datasetFormat = "lldiff-activations"
	// DatasetIndexName marks a dataset complete: it is written last.
	DatasetIndexName = "index.json"
)

// DatasetOptions configure CaptureDataset.
type DatasetOptions struct {
	// Model names the model in the index; the engine's file is hashed.
	Model string
	// Prompts is the prompt file (contrast.EachPrompt reads it);
	// Escapes processes \n and friends in text files.
	Prompts string
	Escapes bool
	Hooks   []models.Hook
	// Positions are the rows taken of each prompt (All: every token);
	// Spec is their text as given.
	Positions RowSpec
	Spec      string
	Tokenize  models.TokenizeOptions
	// Parallel prompts are decoded together.
	Parallel int
	// MaxFileBytes caps the size of a shard file (a file holds at least
	// one prompt, however large).
	MaxFileBytes int64
	// Shard, when N > 0, captures only shard K of N of the prompts.
	Shard Shard
	// Progress hears how many of the shard's prompts are written.
	Progress Progress
}

// DatasetIndex is index.json.
type DatasetIndex struct {
	Format      string          `json:"format"`
	LLDiff      string          `json:"lldiff_version"`
	Model       string          `json:"model"`
	ModelSHA256 string          `json:"model_sha256"`
	Arch        string          `json:"arch"`
	DType       string          `json:"dtype"`
	Positions   string          `json:"positions"`
	Source      string          `json:"source"`
	Shard       *DatasetShard   `json:"shard,omitempty"`
	Hooks       []DatasetHook   `json:"hooks"`
	Files       []DatasetFile   `json:"files"`
	Rows        int64           `json:"rows"`
	Prompts     []DatasetPrompt `json:"prompts"`
}

// DatasetShard says which prompts of the file a sharded capture took.
type DatasetShard struct {
	K         int `json:"k"`
	N         int `json:"n"`
	FirstLine int `json:"first_prompt"`
	EndLine   int `json:"end_prompt"`
}

// DatasetHook is one captured hook: its tensor name in every file and
// its width.
type DatasetHook struct {
	Hook  string `json:"hook"`
	Width int    `json:"width"`
}

// DatasetFile is one shard file.
type DatasetFile struct {
	File    string `json:"file"`
	Rows    int64  `json:"rows"`
	Prompts [2]int `json:"prompts"` // [first, end) prompt index
	Bytes   int64  `json:"bytes"`
}

// DatasetPrompt is one prompt: where its rows are.
type DatasetPrompt struct {
	Index     int     `json:"index"`
	Source    string  `json:"source"`
	Text      string  `json:"text"`
	Tokens    []int32 `json:"tokens"`
	File      int     `json:"file"`
	RowOffset int64   `json:"row_offset"`
	Positions []int   `json:"positions"`
}

// datasetPrompt is a prompt waiting to be decoded into a file.
type datasetPrompt struct {
	index int
	p     contrast.Prompt
	ids   []int32
	pos   []int
}

// CaptureDataset decodes every prompt of o.Prompts (or of shard o.Shard)
// and streams the activations of o.Hooks to size-capped safetensors files,
// each file's header planned before its prompts are decoded and their rows
// written in place: memory holds one file's token ids and one batch's
// activations, whatever the size of the dataset. path(name) is where a
// file of the dataset is written (a staging directory); index.json last.
func CaptureDataset(e models.Engine, o DatasetOptions, path func(name string) string) (*DatasetIndex, error) {
	total, err := contrast.CountPrompts(o.Prompts, contrast.ReadOptions{Escapes: o.Escapes})
	if err != nil {
		return nil, &InputError{Err: err}
	}
	lo, hi := 0, total
	if o.Shard.N > 0 {
		lo, hi = o.Shard.Range(total)
	}
	type sum struct {
		hex string
		err error
	}
	hashed := make(chan sum, 1)
	go func() {
		h, err := FileSHA256(e.Path())
		hashed <- sum{h, err}
	}()
	info := e.ModelInfo()
	idx := &DatasetIndex{
		Format: datasetFormat, LLDiff: Version(), Model: o.Model, Arch: info.Arch, DType: string(safetensors.F32),
		Positions: strings.TrimSpace(o.Spec), Source: o.Prompts, Files: []DatasetFile{}, Prompts: []DatasetPrompt{},
	}
	if o.Shard.N > 0 {
		idx.Shard = &DatasetShard{K: o.Shard.K, N: o.Shard.N, FirstLine: lo, EndLine: hi}
	}
	d := &datasetWriter{e: e, o: o, path: path, idx: idx, hashed: func() (string, error) {
		s := <-hashed
		hashed <- s
		return s.hex, s.err
	}}
	p := progressOr(o.Progress)
	p.Start(hi - lo)
	defer p.Done()
	err = contrast.EachPrompt(o.Prompts, contrast.ReadOptions{Escapes: o.Escapes}, func(i int, pr contrast.Prompt) error {
		if i < lo || i >= hi {
			return nil
		}
		ids, err := e.Tokenize(pr.Text, o.Tokenize)
		if err != nil {
			return fmt.Errorf("%s: %w", pr.Source, err)
		}
		if len(ids) == 0 {
			return inputErr("%s: the prompt gives no tokens", pr.Source)
		}
		var pos []int
		if o.Positions.All {
			pos = make([]int, len(ids))
			for k := range pos {
				pos[k] = k
			}
		} else if pos, err = o.Positions.Resolve(len(ids)); err != nil {
			return inputErr("%s: %v", pr.Source, err)
		}
		if err := d.add(datasetPrompt{index: i, p: pr, ids: ids, pos: pos}); err != nil {
			return err
		}
		p.Update(d.done)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := d.flush(); err != nil {
		return nil, err
	}
	p.Update(d.done)
	if idx.ModelSHA256, err = d.hashed(); err != nil {
		return nil, err
	}
	if d.index != nil {
		if err := d.index.finish(idx); err != nil {
			return nil, err
		}
	} else {
		return nil, inputErr("shard %s of %s holds no prompts (the file has %d): use fewer shards", o.Shard, o.Prompts, total)
	}
	return idx, nil
}

// datasetWriter groups prompts into files and writes them.
type datasetWriter struct {
	e       models.Engine
	o       DatasetOptions
	path    func(string) string
	idx     *DatasetIndex
	hashed  func() (string, error)
	widths  []int // per hook, learnt from the first decode
	pending []datasetPrompt
	bytes   int64 // of the pending prompts' rows
	done    int
	index   *indexWriter
	rows    int64
}

// rowBytes is the size of one row of every hook and the per-row tensors.
func (d *datasetWriter) rowBytes() int64 {
	n := int64(4 + 8 + 4)
	for _, w := range d.widths {
		n += 4 * int64(w)
	}
	return n
}

func (d *datasetWriter) add(p datasetPrompt) error {
	if d.widths == nil {
		if err := d.learnWidths(p); err != nil {
			return err
		}
	}
	size := int64(len(p.pos)) * d.rowBytes()
	if len(d.pending) > 0 && d.bytes+size > d.o.MaxFileBytes {
		if err := d.flush(); err != nil {
			return err
		}
	}
	d.pending = append(d.pending, p)
	d.bytes += size
	return nil
}

// learnWidths decodes the first prompt's last row to learn each hook's
// width, which every file header needs before its rows exist.
func (d *datasetWriter) learnWidths(p datasetPrompt) error {
	run, err := d.e.NewRunner([][]int32{p.ids}, 1)
	if err != nil {
		return err
	}
	defer run.Close()
	got, err := run.RunRows([][]int32{p.ids}, [][]int{{len(p.ids) - 1}}, d.o.Hooks)
	if err != nil {
		return err
	}
	for _, h := range d.o.Hooks {
		a := hookRows(got[0], h)
		if a == nil {
			return fmt.Errorf("internal error: %s was not captured", h.Name())
		}
		d.widths = append(d.widths, a.Width)
		d.idx.Hooks = append(d.idx.Hooks, DatasetHook{Hook: h.Name(), Width: a.Width})
	}
	return nil
}

func hookRows(r *models.SeqRows, h models.Hook) *models.Activation {
	if a := r.Acts[h]; a != nil {
		return a
	}
	if h.Kind == models.Logits {
		return r.Logits
	}
	return nil
}

// flush writes the pending prompts as the next file.
func (d *datasetWriter) flush() error {
	if len(d.pending) == 0 {
		return nil
	}
	fileNo := len(d.idx.Files)
	name := fmt.Sprintf("shard-%05d.safetensors", fileNo)
	var rows int64
	for _, p := range d.pending {
		rows += int64(len(p.pos))
	}
	var specs []safetensors.Spec
	for k, h := range d.o.Hooks {
		specs = append(specs, safetensors.Spec{Name: h.Name(), DType: safetensors.F32, Shape: []int64{rows, int64(d.widths[k])}})
	}
	specs = append(specs,
		safetensors.Spec{Name: "token_ids", DType: safetensors.I32, Shape: []int64{rows}},
		safetensors.Spec{Name: "prompt", DType: safetensors.I64, Shape: []int64{rows}},
		safetensors.Spec{Name: "position", DType: safetensors.I32, Shape: []int64{rows}},
	)
	hookNames := make([]string, len(d.o.Hooks))
	for k, h := range d.o.Hooks {
		hookNames[k] = h.Name()
	}
	hj, _ := json.Marshal(hookNames)
	meta := map[string]string{
		"format": datasetFormat, "model": d.o.Model, "model_sha256": strings.Repeat("0", 64), "hooks": string(hj),
		"dtype": string(safetensors.F32), "positions": d.idx.Positions,
		"prompts":    fmt.Sprintf("%d-%d", d.pending[0].index, d.pending[len(d.pending)-1].index+1),
		"row_offset": fmt.Sprint(d.rows),
	}
	plan, hdr, err := safetensors.Plan(specs, meta)
	if err != nil {
		return err
	}
	f, err := os.Create(d.path(name))
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := safetensors.NewWriter(f, plan, hdr)
	if err != nil {
		return err
	}
	if d.index == nil {
		if d.index, err = newIndexWriter(d.path(DatasetIndexName)); err != nil {
			return err
		}
	}
	// the per-row tensors and the index entries, from the token ids
	var tok, pos []int32
	var prm []int64
	row := int64(0)
	rowOf := make([]int64, len(d.pending))
	for i, p := range d.pending {
		rowOf[i] = row
		for _, j := range p.pos {
			tok = append(tok, p.ids[j])
			pos = append(pos, int32(j))
			prm = append(prm, int64(p.index))
		}
		row += int64(len(p.pos))
		if err := d.index.prompt(DatasetPrompt{Index: p.index, Source: p.p.Source, Text: p.p.Text, Tokens: p.ids, File: fileNo, RowOffset: rowOf[i], Positions: p.pos}); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		name string
		b    []byte
	}{{"token_ids", safetensors.Int32Bytes(nil, tok)}, {"prompt", safetensors.Int64Bytes(nil, prm)}, {"position", safetensors.Int32Bytes(nil, pos)}} {
		if err := w.WriteAt(t.name, 0, t.b); err != nil {
			return err
		}
	}
	// decode parallel prompts at a time and write their rows in place
	par := max(1, d.o.Parallel)
	var run models.Runner
	var buf []byte
	for start := 0; start < len(d.pending); start += par {
		end := min(start+par, len(d.pending))
		seqs := make([][]int32, 0, end-start)
		ps := make([][]int, 0, end-start)
		for _, p := range d.pending[start:end] {
			seqs, ps = append(seqs, p.ids), append(ps, p.pos)
		}
		if run == nil {
			all := make([][]int32, len(d.pending))
			for i, p := range d.pending {
				all[i] = p.ids
			}
			if run, err = d.e.NewRunner(all, par); err != nil {
				return err
			}
			defer run.Close()
		}
		got, err := run.RunRows(seqs, ps, d.o.Hooks)
		if err != nil {
			return err
		}
		for k, r := range got {
			i := start + k
			for hk, h := range d.o.Hooks {
				a := hookRows(r, h)
				if a == nil || a.Width != d.widths[hk] || a.Rows() != len(d.pending[i].pos) {
					return fmt.Errorf("internal error: %s of %s has an unexpected shape", h.Name(), d.pending[i].p.Source)
				}
				if bad := nonFiniteIndex(a.Data); bad >= 0 {
					return fmt.Errorf("%s: %s holds %v at position %d: the model overflows on this prompt", d.pending[i].p.Source, h.Name(), a.Data[bad], d.pending[i].pos[bad/a.Width])
				}
				buf = safetensors.Float32Bytes(buf[:0], a.Data)
				if err := w.WriteAt(h.Name(), rowOf[i]*int64(4*a.Width), buf); err != nil {
					return err
				}
			}
		}
		d.done += end - start
		if d.o.Progress != nil {
			d.o.Progress.Update(d.done)
		}
	}
	// the model's hash has the length of the placeholder: the header is
	// rewritten in place, its size unchanged
	sum, err := d.hashed()
	if err != nil {
		return err
	}
	meta["model_sha256"] = sum
	plan2, hdr2, err := safetensors.Plan(specs, meta)
	if err != nil || len(hdr2) != len(hdr) || plan2.Size() != plan.Size() {
		return fmt.Errorf("internal error: the header changed size (%v)", err)
	}
	if _, err := f.WriteAt(hdr2, 0); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	d.idx.Files = append(d.idx.Files, DatasetFile{File: name, Rows: rows, Prompts: [2]int{d.pending[0].index, d.pending[len(d.pending)-1].index + 1}, Bytes: plan.Size()})
	d.rows += rows
	d.idx.Rows = d.rows
	d.pending, d.bytes = d.pending[:0], 0
	return nil
}

// indexWriter streams index.json: the prompts as they are written, the
// rest of the index at the end, so that the index of a large dataset is
// never whole in memory.
type indexWriter struct {
	f     *os.File
	w     *bufio.Writer
	tmp   string
	final string
	n     int
}

func newIndexWriter(final string) (*indexWriter, error) {
	f, err := os.CreateTemp(dirOf(final), ".prompts-*")
	if err != nil {
		return nil, err
	}
	return &indexWriter{f: f, w: bufio.NewWriter(f), tmp: f.Name(), final: final}, nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, os.PathSeparator); i >= 0 {
		return p[:i]
	}
	return "."
}

func (x *indexWriter) prompt(p DatasetPrompt) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if x.n > 0 {
		x.w.WriteString(",\n    ")
	}
	x.n++
	_, err = x.w.Write(b)
	return err
}

// finish writes index.json: the index's fields, then the streamed prompts.
func (x *indexWriter) finish(idx *DatasetIndex) error {
	if err := x.w.Flush(); err != nil {
		return err
	}
	defer os.Remove(x.tmp)
	head := *idx
	head.Prompts = []DatasetPrompt{}
	b, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return err
	}
	// the index ends with "prompts": []}: the streamed prompts go between
	// the brackets
	s, ok := strings.CutSuffix(string(b), "[]\n}")
	if !ok {
		return fmt.Errorf("internal error: index.json does not end with its prompts")
	}
	out, err := os.Create(x.final)
	if err != nil {
		return err
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	w.WriteString(s + "[\n    ")
	if _, err := x.f.Seek(0, 0); err != nil {
		return err
	}
	if _, err := w.ReadFrom(x.f); err != nil {
		return err
	}
	x.f.Close()
	w.WriteString("\n  ]\n}\n")
	if err := w.Flush(); err != nil {
		return err
	}
	return out.Close()
}

// ReadDatasetIndex reads the index.json of a dataset directory and checks
// that every file it lists is there, of the size it records.
func ReadDatasetIndex(dir string) (*DatasetIndex, error) {
	b, err := os.ReadFile(dir + string(os.PathSeparator) + DatasetIndexName)
	if err != nil {
		return nil, err
	}
	var idx DatasetIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s/%s: %v: the index is damaged", dir, DatasetIndexName, err)
	}
	if idx.Format != datasetFormat {
		return nil, fmt.Errorf("%s: format %q, not an activation dataset written by lldiff capture --prompts", dir, idx.Format)
	}
	for _, f := range idx.Files {
		st, err := os.Stat(dir + string(os.PathSeparator) + f.File)
		if err != nil || st.Size() != f.Bytes {
			return nil, fmt.Errorf("%s: %s is missing or not of the %d bytes the index records: the dataset is incomplete", dir, f.File, f.Bytes)
		}
	}
	return &idx, nil
}
