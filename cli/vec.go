package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// VecOptions are the options of `lldiff vec`, parsed and checked.
type VecOptions struct {
	IO      *IOStreams
	Model   modelFlags
	Sources []string
	Hooks   string
	// Pos is the parsed --pos.
	Pos        analysis.RowSpec
	Method     string
	CvecOffset int
	JSON       bool
	// HTML is --html: also write the report page there; Force replaces it.
	HTML  string
	Force bool
}

func newCmdVec(io *IOStreams, runF func(*VecOptions) error) *cobra.Command {
	opts := &VecOptions{IO: io}
	var pos string
	cmd := &cobra.Command{
		Use:   "vec [-m MODEL] SOURCE SOURCE...",
		Short: "Cosine similarities, norms and projections between difference vectors",
		Long: `Compare directions hook by hook: their norms, the cosine-similarity matrix,
and projections (row i, column j: v_i · v_j/‖v_j‖, how far v_i reaches
along v_j).

A SOURCE is one of:
  DIR          a --save-vectors directory of lldiff contrast (index.json);
               --method picks mean (the mean difference) or pca (PC1)
  FILE.gguf    a llama.cpp control vector: direction.N is taken as
               resid_post.(N − offset), the offset read from the file
               (lldiff writes it) or given with --cvec-layer-offset
  FILE.npy     one vector, compared at every hook
  "A|B"        a prompt pair, run with -m: activation(A) − activation(B)
               at --pos (default: each prompt's last token), e.g.
               "father|mother" "king|queen"; a pair has one bare |: write
               a | inside a prompt as \| and a backslash as \\, e.g.
               'x \| y|z' is the pair "x | y" and "z"

Hooks present in every source are compared; --hooks narrows them.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Sources = args
			opts.Model.warnLimits(io)
			switch opts.Method {
			case "mean", "pca":
			default:
				return usageErr("--method %q: use mean or pca", opts.Method)
			}
			if opts.CvecOffset < -1 || opts.CvecOffset > 1 {
				return usageErr("--cvec-layer-offset takes 0 or 1")
			}
			var err error
			if opts.Pos, err = analysis.ParseRowSpec(pos); err != nil {
				return &UsageError{Err: err}
			}
			if runF != nil {
				return runF(opts)
			}
			return vecRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Hooks, "hooks", "", "hooks to compare (default: every hook all sources have; prompt pairs: resid_post)")
	f.StringVar(&pos, "pos", "last", "position of prompt pairs: last or an index such as -2")
	f.StringVar(&opts.Method, "method", "mean", "which vector of a --save-vectors directory: mean or pca")
	f.IntVar(&opts.CvecOffset, "cvec-layer-offset", -1, "layer offset of control vectors that do not record theirs (0: lldiff, 1: cvector-generator)")
	f.BoolVar(&opts.JSON, "json", false, "print JSON")
	addHTMLFlag(f, &opts.HTML, &opts.Force)
	return cmd
}

// VecJSON is the document `vec --json` prints.
type VecJSON = analysis.VecResult

func vecRun(opts *VecOptions) error {
	if err := checkHTMLFlag(opts.HTML, opts.Force); err != nil {
		return err
	}
	var sources []*analysis.VecSource
	var pair *analysis.VecSource
	for _, arg := range opts.Sources {
		src, err := analysis.LoadVecSource(arg, analysis.VecLoadOptions{Method: opts.Method, CvecOffset: opts.CvecOffset})
		if err != nil {
			return flagAdvice(err)
		}
		if src.Kind == "pair" && pair == nil {
			pair = src
		}
		sources = append(sources, src)
	}
	o := analysis.VecOptions{Sources: sources, Hooks: opts.Hooks, Pos: opts.Pos, Tokenize: opts.Model.tokenizeOptions()}
	var e models.Engine
	if pair != nil {
		if err := opts.Model.check(); err != nil {
			return usageErr("prompt pairs such as %q need a model: %v", pair.Name, err)
		}
		m, err := opts.Model.load(false)
		if err != nil {
			return err
		}
		defer m.Close()
		e = opts.Model.engine(m)
	}
	doc, err := analysis.Vec(e, o)
	if err != nil {
		return flagAdvice(err)
	}
	if err := writeHTML(opts.HTML, report.KindVec, doc); err != nil {
		return err
	}
	if opts.JSON {
		err = writeJSON(opts.IO.Out, doc)
	} else {
		err = printVec(opts.IO, doc)
	}
	if err == nil {
		noteHTML(opts.IO, opts.JSON, opts.HTML)
	}
	return err
}

func printVec(io *IOStreams, doc *VecJSON) error {
	out := io.Out
	for i, s := range doc.Sources {
		fmt.Fprintf(out, "[%d] %s (%s)\n", i+1, safetext.Terminal(s.Name), s.Kind)
	}
	if len(doc.Sources) == 2 {
		fmt.Fprintln(out)
		var rows [][]string
		for _, h := range doc.Hooks {
			rows = append(rows, []string{shortHook(h.Hook), fmt.Sprintf("%.4g", h.Norms[0]), fmt.Sprintf("%.4g", h.Norms[1]),
				orDash(h.Cosine[0][1], "%.4f"), orDash(h.Projection[0][1], "%.4g"), orDash(h.Projection[1][0], "%.4g")})
		}
		if err := table(io, []string{"hook", "‖[1]‖", "‖[2]‖", "cos", "[1]·û[2]", "[2]·û[1]"}, rows); err != nil {
			return err
		}
		printNotes(out, doc.Notes)
		return nil
	}
	for _, h := range doc.Hooks {
		fmt.Fprintf(out, "\n== %s: cosine (norm in the last column) ==\n", shortHook(h.Hook))
		header := []string{""}
		for j := range doc.Sources {
			header = append(header, fmt.Sprintf("[%d]", j+1))
		}
		header = append(header, "norm")
		var rows [][]string
		for i := range doc.Sources {
			r := []string{fmt.Sprintf("[%d]", i+1)}
			for j := range doc.Sources {
				r = append(r, orDash(h.Cosine[i][j], "%.3f"))
			}
			rows = append(rows, append(r, fmt.Sprintf("%.4g", h.Norms[i])))
		}
		if err := table(io, header, rows); err != nil {
			return err
		}
	}
	printNotes(out, doc.Notes)
	return nil
}

func orDash(p *float64, format string) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf(format, *p)
}

// printNotes prints notes, which may quote names from files, escaped.
func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note:", safetext.Terminal(n))
	}
}

func shortHook(name string) string {
	if hs, err := models.ParseHook(name, 1<<20); err == nil && len(hs) == 1 {
		return hs[0].Short()
	}
	return name
}
