package cli

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/llamacpp"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// ParamsOptions are the options of `lldiff params`, parsed and checked.
type ParamsOptions struct {
	IO    *IOStreams
	Model modelFlags
	Layer int
	// Neurons and Heads are the parsed --neuron and --head lists.
	Neurons []int
	Heads   []int
	Top     int
	By      string
	K       int
	Pairs   int
	Rank    int
	// Lens is the parsed --lens-norm.
	Lens       models.LensMode
	Along      string
	Hook       string
	Pos        analysis.RowSpec
	Method     string
	CvecOffset int
	AllTokens  bool
	JSON       bool
	// Align is --align B.gguf: correlate every layer's MLP with every
	// layer of B in embedding space; AlignKind is down or up; Plot draws
	// the correlations as a heatmap.
	Align     string
	AlignKind string
	Plot      string
	Force     bool
	// HTML is --html: also write the report page there (--force replaces
	// it, as it does --plot).
	HTML string
}

func newCmdParams(io *IOStreams, runF func(*ParamsOptions) error) *cobra.Command {
	opts := &ParamsOptions{IO: io}
	var neurons, heads, lensNorm, pos string
	cmd := &cobra.Command{
		Use:   "params -m MODEL --layer L (--neuron N | --top K | --head H | --along DIR)",
		Short: "Read a layer's parameters as tokens: neurons, attention circuits, what writes along a direction",
		Long: `Project weights onto the vocabulary, as in Dar, Geva et al., "Analyzing
Transformers in Embedding Space" (2022). The weights are read from the file
as stored (any quantization lldiff decodes), a block of rows at a time.

MLP neurons (--neuron N, a list 3,17; or --top K of the layer by --by):
  write  column N of ffn_down, the vector the neuron adds to the residual
         stream, through the unembedding: the tokens it promotes (top) and
         suppresses (bottom)
  up     row N of ffn_up, the direction it reads (and gate: row N of
         ffn_gate, llama and qwen2)
Attention heads (--head H, a list 0,5):
  OV     Eᵀ W_V^h W_O^h E: input token (attended to) → output token it
         promotes (top) or suppresses (bottom)
  QK     Eᵀ W_Q^h W_K^hᵀ E/√d_head: (query token, key token) pairs that
         attend most (top) and least (bottom), at relative position 0
         (rotary embeddings make scores depend on the distance)
  Both are factored through d_head: no n_vocab × n_vocab matrix is formed;
  the top pairs are exact (a Cauchy–Schwarz bound prunes the search).
  Grouped-query attention: head h reads kv head h / (n_head / n_head_kv).

--lens-norm raw (default) multiplies by W_U as the paper does; gamma applies
the final norm's weight γ first (centred for a LayerNorm), and multiplies the
embeddings a head reads by the layer's attn_norm γ.

--align B.gguf compares two models with one vocabulary, after section 5 of the
paper: each layer's MLP is read as the n_vocab × n_vocab matrix E W Wᵀ Eᵀ (W
the write vectors, or with --align-kind up the read vectors; E the
unembedding), which does not depend on the order of the neurons, and every
layer of A is correlated (Pearson) with every layer of B, computed through
d × d Gram matrices; the best match of each layer is listed, and --plot draws
the heatmap. No --layer is needed.

--along ranks the layer's neurons (cosine of the write direction with the
direction) and heads (largest cosine of the head's write space, the columns
of W_O^h, with it). The direction is a .npy vector, a --save-vectors
directory, a control vector (direction at resid_post.L), or a prompt pair
"A|B": then A − B at --hook (default resid_post.L) at --pos, and neurons and
heads are ranked by what they actually wrote along it in this run:
activation(A) − activation(B) times the projection of the write direction
(the sums are checked against mlp_out and attn_out).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Model.check(); err != nil {
				return err
			}
			var err error
			if opts.Neurons, err = parseIndexList("--neuron", neurons); err != nil {
				return err
			}
			if opts.Heads, err = parseIndexList("--head", heads); err != nil {
				return err
			}
			if opts.Align != "" {
				if opts.HTML != "" {
					return usageErr("--html draws the reading of one layer; the --align correlations are drawn by --plot FILE.png|FILE.svg")
				}
				if opts.Plot != "" {
					if e := strings.ToLower(filepath.Ext(opts.Plot)); e != ".png" && e != ".svg" {
						return usageErr("--plot %q: give a file ending in .png or .svg", opts.Plot)
					}
				}
				if runF != nil {
					return runF(opts)
				}
				return alignRun(opts)
			}
			if opts.Plot != "" {
				return usageErr("--plot draws the --align heatmap: give --align B.gguf")
			}
			if !cmd.Flags().Changed("layer") {
				return usageErr("no layer: pass --layer L")
			}
			if len(opts.Neurons) == 0 && len(opts.Heads) == 0 && opts.Top == 0 && opts.Along == "" {
				return usageErr("nothing to read: pass --neuron N, --top K, --head H or --along DIRECTION")
			}
			if opts.Top < 0 || opts.K < 1 || opts.Pairs < 1 || opts.Rank < 1 {
				return usageErr("--top takes a number >= 0; -k, --pairs and --rank >= 1")
			}
			if opts.Lens, err = models.ParseLensMode(lensNorm); err != nil {
				return &UsageError{Err: err}
			}
			if opts.Lens == models.LensNorm {
				return usageErr("--lens-norm norm rescales an activation by its own size; a weight has none: use raw or gamma")
			}
			switch opts.By {
			case "norm", "cos", "act":
			default:
				return usageErr("--by %q: use norm, cos or act", opts.By)
			}
			if !cmd.Flags().Changed("by") && opts.Along != "" {
				opts.By = "cos"
				if _, _, ok, _ := analysis.SplitPair(opts.Along); ok {
					opts.By = "act"
				}
			}
			if opts.Pos, err = analysis.ParseRowSpec(pos); err != nil {
				return &UsageError{Err: err}
			}
			if runF != nil {
				return runF(opts)
			}
			return paramsRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.IntVarP(&opts.Layer, "layer", "l", 0, "layer to read")
	f.StringVar(&neurons, "neuron", "", "MLP neurons to project: N or a list N1,N2")
	f.IntVar(&opts.Top, "top", 0, "project the first K neurons of the layer by --by")
	f.StringVar(&opts.By, "by", "norm", "order of --top: norm (‖write‖), cos (with --along) or act (with --along \"A|B\")")
	f.StringVar(&heads, "head", "", "attention heads: H or a list H1,H2")
	f.IntVarP(&opts.K, "k", "k", 10, "tokens per list")
	f.IntVar(&opts.Pairs, "pairs", 10, "token pairs per circuit")
	f.IntVar(&opts.Rank, "rank", 10, "neurons and heads listed by --along")
	f.StringVar(&lensNorm, "lens-norm", "raw", "raw (Eᵀv) or gamma (the norm weight γ applied first)")
	f.StringVar(&opts.Along, "along", "", "direction: FILE.npy, a --save-vectors DIR, a control vector, or \"A|B\"")
	f.StringVar(&opts.Hook, "hook", "", "hook of the --along direction (default resid_post.L)")
	f.StringVar(&pos, "pos", "last", "position of an --along prompt pair: last or an index such as -2")
	f.StringVar(&opts.Method, "method", "mean", "which vector of a --save-vectors directory: mean or pca")
	f.IntVar(&opts.CvecOffset, "cvec-layer-offset", -1, "layer offset of a control vector that does not record its own (0: lldiff, 1: cvector-generator)")
	f.StringVar(&opts.Align, "align", "", "correlate every layer's MLP with every layer of this model (same vocabulary) in embedding space")
	f.StringVar(&opts.AlignKind, "align-kind", "down", "what --align compares: down (write vectors) or up (read vectors)")
	f.StringVar(&opts.Plot, "plot", "", "write the --align heatmap to FILE.png or FILE.svg")
	f.BoolVar(&opts.Force, "force", false, "replace an existing --plot or --html file")
	addHTMLFlag(f, &opts.HTML, nil)
	f.BoolVar(&opts.AllTokens, "all-tokens", false, "also list byte-fallback, control, unknown and unused tokens")
	f.BoolVar(&opts.JSON, "json", false, "print JSON (schema in docs/geometry.md)")
	return cmd
}

// parseIndexList parses "3" or "3,17" into non-negative integers.
func parseIndexList(flag, s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return nil, usageErr("%s %q: give a number >= 0 or a list such as 3,17", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// ParamsJSON is the document `params --json` prints (docs/geometry.md).
type ParamsJSON = analysis.ParamsResult

func paramsRun(opts *ParamsOptions) error {
	if err := checkHTMLFlag(opts.HTML, opts.Force); err != nil {
		return err
	}
	w, err := models.OpenWeights(opts.Model.Model)
	if err != nil {
		return err
	}
	defer w.Close()
	var along *analysis.VecSource
	if opts.Along != "" {
		if along, err = analysis.LoadVecSource(opts.Along, analysis.VecLoadOptions{Method: opts.Method, CvecOffset: opts.CvecOffset}); err != nil {
			return flagAdvice(err)
		}
	}
	// a prompt pair needs the model's weights in llama.cpp; the rest only
	// its tokenizer
	pair := along != nil && along.Kind == "pair"
	m, err := opts.Model.load(!pair)
	if err != nil {
		return err
	}
	defer m.Close()
	var e models.Engine
	if pair {
		e = opts.Model.engine(m)
	}
	doc, err := analysis.Params(w, m, e, analysis.ParamsOptions{
		Model: opts.Model.Model, Layer: opts.Layer, Neurons: opts.Neurons, TopNeurons: opts.Top, By: opts.By,
		Heads: opts.Heads, K: opts.K, Pairs: opts.Pairs, Lens: opts.Lens, Along: along, AlongHook: opts.Hook,
		Pos: opts.Pos, Tokenize: opts.Model.tokenizeOptions(), Rank: opts.Rank, AllTokens: opts.AllTokens,
	})
	if err != nil {
		return flagAdvice(err)
	}
	if err := writeHTML(opts.HTML, report.KindParams, doc); err != nil {
		return err
	}
	if opts.JSON {
		err = writeJSON(opts.IO.Out, doc)
	} else {
		err = printParams(opts, doc)
	}
	if err == nil {
		noteHTML(opts.IO, opts.JSON, opts.HTML)
	}
	return err
}

func printParams(opts *ParamsOptions, doc *ParamsJSON) error {
	out := opts.IO.Out
	s := doc.Shape
	fmt.Fprintf(out, "%s (%s): layer %d of %d, d_model %d, d_ff %d, %d heads (%d kv) of %d, vocabulary %d; lens %s\n",
		safetext.Terminal(doc.Model), doc.Arch, doc.Layer, s.NLayer, s.DModel, s.DFF, s.NHead, s.NHeadKV, s.DHead, s.NVocab, doc.LensNorm)
	for _, t := range doc.Tensors {
		fmt.Fprintln(out, "  "+t)
	}
	tokens := func(ts []analysis.LensToken) string {
		var p []string
		for _, t := range ts {
			p = append(p, fmt.Sprintf("%s %.3g", t.Piece, t.Value))
		}
		return strings.Join(p, "  ")
	}
	if a := doc.Along; a != nil {
		fmt.Fprintf(out, "\n== along %s (%s) at %s, ‖v‖ = %.4g ==\n", safetext.Terminal(a.Source), a.Kind, shortHook(a.Hook), a.Norm)
		prompts := len(a.Prompts) > 0
		header := []string{"neuron", "cos(w,v)", "w·v̂"}
		if prompts {
			header = append(header, "act A", "act B", "wrote along v̂")
		}
		var rows [][]string
		for _, n := range a.Neurons {
			r := []string{fmt.Sprint(n.Index), fmt.Sprintf("%+.4f", n.Cos), fmt.Sprintf("%+.4g", n.Proj)}
			if prompts {
				r = append(r, fmt.Sprintf("%.4g", *n.ActA), fmt.Sprintf("%.4g", *n.ActB), fmt.Sprintf("%+.4g", *n.Contribution))
			}
			rows = append(rows, r)
		}
		if err := table(opts.IO, header, rows); err != nil {
			return err
		}
		if prompts {
			fmt.Fprintf(out, "sum over all %d neurons %+.4g; (mlp_out(A) − mlp_out(B))·v̂ = %+.4g\n", s.DFF, *a.NeuronSum, *a.MLPOut)
		}
		fmt.Fprintln(out)
		header = []string{"head", "kv", "max cos(W_O^h x, v)"}
		if prompts {
			header = append(header, "wrote along v̂")
		}
		rows = nil
		for _, h := range a.Heads {
			r := []string{fmt.Sprint(h.Head), fmt.Sprint(h.KVHead), fmt.Sprintf("%.4f", h.Cos)}
			if prompts {
				r = append(r, fmt.Sprintf("%+.4g", *h.Contribution))
			}
			rows = append(rows, r)
		}
		if err := table(opts.IO, header, rows); err != nil {
			return err
		}
		if prompts {
			fmt.Fprintf(out, "sum over all %d heads %+.4g; (attn_out(A) − attn_out(B))·v̂ = %+.4g\n", s.NHead, *a.HeadSum, *a.AttnOut)
		}
	}
	for _, n := range doc.Neurons {
		fmt.Fprintf(out, "\n== neuron %d of layer %d: ‖write‖ = %.4g", n.Index, doc.Layer, n.WriteNorm)
		if n.UpBias != nil {
			fmt.Fprintf(out, ", b_up = %+.4g", *n.UpBias)
		}
		fmt.Fprintln(out, " ==")
		rows := [][]string{
			{"write +", tokens(n.Write.Top)}, {"write −", tokens(n.Write.Bottom)},
			{"up +", tokens(n.Up.Top)}, {"up −", tokens(n.Up.Bottom)},
		}
		if n.Gate != nil {
			rows = append(rows, []string{"gate +", tokens(n.Gate.Top)}, []string{"gate −", tokens(n.Gate.Bottom)})
		}
		if err := table(opts.IO, []string{"", "tokens (value)"}, rows); err != nil {
			return err
		}
	}
	for _, h := range doc.Heads {
		for _, c := range []struct {
			name, arrow string
			c           analysis.Circuit
		}{{"OV (input → output)", "→", h.OV}, {"QK (query · key)", "·", h.QK}} {
			fmt.Fprintf(out, "\n== head %d (kv head %d) of layer %d: %s ==\n", h.Head, h.KVHead, doc.Layer, c.name)
			var rows [][]string
			for i := range max(len(c.c.Top), len(c.c.Bottom)) {
				r := []string{fmt.Sprint(i + 1), "", ""}
				if i < len(c.c.Top) {
					p := c.c.Top[i]
					r[1] = fmt.Sprintf("%s %s %s  %.4g", p.InPiece, c.arrow, p.OutPiece, p.Value)
				}
				if i < len(c.c.Bottom) {
					p := c.c.Bottom[i]
					r[2] = fmt.Sprintf("%s %s %s  %.4g", p.InPiece, c.arrow, p.OutPiece, p.Value)
				}
				rows = append(rows, r)
			}
			if err := table(opts.IO, []string{"#", "largest", "smallest"}, rows); err != nil {
				return err
			}
		}
	}
	printNotes(out, doc.Notes)
	return nil
}

// AlignJSON is the document `params --align --json` prints.
type AlignJSON = analysis.AlignResult

func alignRun(opts *ParamsOptions) error {
	if opts.Plot != "" {
		if err := checkOutFile(opts.Plot, "--plot", opts.Force); err != nil {
			return err
		}
	}
	open := func(path string) (*models.Weights, *llamacpp.Model, error) {
		w, err := models.OpenWeights(path)
		if err != nil {
			return nil, nil, err
		}
		f := opts.Model
		f.Model = path
		m, err := f.load(true)
		if err != nil {
			w.Close()
			return nil, nil, err
		}
		return w, m, nil
	}
	wa, ma, err := open(opts.Model.Model)
	if err != nil {
		return err
	}
	defer wa.Close()
	defer ma.Close()
	wb, mb, err := open(opts.Align)
	if err != nil {
		return fmt.Errorf("--align: %w", err)
	}
	defer wb.Close()
	defer mb.Close()
	doc, err := analysis.Align(wa, wb, ma, mb, analysis.AlignOptions{Kind: opts.AlignKind})
	if err != nil {
		return flagAdvice(err)
	}
	doc.ModelA, doc.ModelB = opts.Model.Model, opts.Align
	if opts.Plot != "" {
		if err := writeAlignPlot(opts.Plot, doc); err != nil {
			return fmt.Errorf("writing the plot: %w", err)
		}
	}
	if opts.JSON {
		return writeJSON(opts.IO.Out, doc)
	}
	out := opts.IO.Out
	fmt.Fprintf(out, "A: %s\nB: %s\nPearson correlation of each layer's MLP (%s vectors) in embedding space, E W Wᵀ Eᵀ\n\n",
		safetext.Terminal(doc.ModelA), safetext.Terminal(doc.ModelB), doc.Kind)
	header := []string{"A \\ B"}
	for j := range doc.Corr[0] {
		header = append(header, fmt.Sprint(j))
	}
	header = append(header, "best")
	var rows [][]string
	for i, row := range doc.Corr {
		r := []string{fmt.Sprint(i)}
		for _, c := range row {
			r = append(r, fmt.Sprintf("%.3f", c))
		}
		rows = append(rows, append(r, fmt.Sprint(doc.Match[i])))
	}
	if err := table(opts.IO, header, rows); err != nil {
		return err
	}
	if opts.Plot != "" {
		fmt.Fprintf(out, "wrote %s\n", opts.Plot)
	}
	return nil
}

// alignGrid is the correlation matrix as a heatmap grid.
type alignGrid [][]float64

func (g alignGrid) Dims() (c, r int)   { return len(g[0]), len(g) }
func (g alignGrid) Z(c, r int) float64 { return g[r][c] }
func (g alignGrid) X(c int) float64    { return float64(c) }
func (g alignGrid) Y(r int) float64    { return float64(r) }

// writeAlignPlot draws the layer-by-layer correlations, −1 to 1.
func writeAlignPlot(path string, doc *AlignJSON) error {
	cmap := newDiverging(-1, 1)
	p := plot.New()
	p.Title.Text = fmt.Sprintf("MLP (%s) in embedding space: Pearson correlation", doc.Kind)
	p.X.Label.Text = "layer of " + filepath.Base(doc.ModelB)
	p.Y.Label.Text = "layer of " + filepath.Base(doc.ModelA)
	hm := plotter.NewHeatMap(alignGrid(doc.Corr), cmap.Palette(255))
	hm.Min, hm.Max = -1, 1
	p.Add(hm)
	p.X.Padding, p.Y.Padding = 0, 0
	ticks := func(n int) plot.ConstantTicks {
		every := (n + 29) / 30
		var t []plot.Tick
		for i := 0; i < n; i += every {
			t = append(t, plot.Tick{Value: float64(i), Label: fmt.Sprint(i)})
		}
		return t
	}
	p.X.Tick.Marker = ticks(len(doc.Corr[0]))
	p.Y.Tick.Marker = ticks(len(doc.Corr))
	var c vg.CanvasWriterTo
	w, h := 7*vg.Inch, 6*vg.Inch
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(plotDPI))}
	case ".svg":
		c = vgsvg.New(w, h)
	default:
		return fmt.Errorf("%s: the plot must be a .png or .svg file", path)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(draw.Crop(dc, 0, -1.5*vg.Inch, 0, 0))
	cb := plot.New()
	cb.Title.Text = "corr"
	cb.Add(&plotter.ColorBar{ColorMap: cmap, Vertical: true})
	cb.HideX()
	cb.Draw(draw.Crop(dc, w-1.35*vg.Inch, -0.55*vg.Inch, 0.5*vg.Inch, -0.4*vg.Inch))
	f, err := outfile.Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := c.WriteTo(f); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	return f.Commit()
}
