package cli

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/brewer"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/outfile"
	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/report"
)

// MapOptions are the options of `lldiff map`, parsed and checked.
type MapOptions struct {
	IO        *IOStreams
	Model     modelFlags
	Prompts   string
	Hooks     string
	Span      bool
	MaxK      int
	Analogies []string
	Diffs     []string
	Nearest   int
	Plot      string
	Force     bool
	JSON      bool
	// HTML is --html: also write the report page there (--force replaces
	// it, as it does --plot).
	HTML string
}

func newCmdMap(io *IOStreams, runF func(*MapOptions) error) *cobra.Command {
	opts := &MapOptions{IO: io}
	cmd := &cobra.Command{
		Use:   "map -m MODEL --prompts FILE [--hook HOOK] [--plot map.png]",
		Short: "Many concepts in one picture: cosines, clusters and a 2-D map of one vector per prompt",
		Long: `Run every line of FILE and take one vector per line at each --hook (default
the last layer's resid_post): the last token's, or with --span the mean over
the tokens of the word marked [[like this]] in the line. Then:

  cosines   the cosine matrix, rows ordered by average-linkage hierarchical
            clustering on 1 − cos (similar prompts side by side)
  PCA       every prompt's coordinates on the first two principal axes and
            the fraction of the variance they hold (PCA is exact and
            deterministic; lldiff ships no t-SNE or UMAP: no well-kept pure
            Go library exists, and their pictures depend on seeds and
            perplexity)
  clusters  k-means (k-means++, 10 starts, fixed seed) on the vectors scaled
            to unit length, k from 2 to --k-max chosen by the largest mean
            silhouette

A line is "label<TAB>text" or text alone; # starts a comment.

--analogy "a:b::c:?" lists the prompts nearest (cosine) to b − a + c, by
label. --diffs "x|y" (repeatable, or further pairs as arguments) compares
difference vectors x − y at resid_post of every layer: cosine and distance
between every two of them (x and y are labels, or prompts of their own).
--plot FILE.png|FILE.svg draws the PCA map with labels, coloured by cluster
(several hooks: one file each, the hook added to the name).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Model.check(); err != nil {
				return err
			}
			opts.Model.warnLimits(io)
			if len(args) > 0 && !cmd.Flags().Changed("diffs") {
				return usageErr("map takes no arguments except further --diffs pairs: give the prompts with --prompts FILE")
			}
			opts.Diffs = append(opts.Diffs, args...)
			if opts.Prompts == "" && len(opts.Diffs) == 0 {
				return usageErr("no prompts: pass --prompts FILE (one prompt per line, label<TAB>text)")
			}
			if opts.MaxK < 2 || opts.Nearest < 1 {
				return usageErr("--k-max takes a number >= 2 and --nearest >= 1")
			}
			if opts.Plot != "" {
				if e := strings.ToLower(filepath.Ext(opts.Plot)); e != ".png" && e != ".svg" {
					return usageErr("--plot %q: give a file ending in .png or .svg", opts.Plot)
				}
				if opts.Prompts == "" {
					return usageErr("--plot draws the map of --prompts: give --prompts FILE")
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return mapRun(opts)
		},
	}
	opts.Model.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&opts.Prompts, "prompts", "", "prompt file: one prompt per line, label<TAB>text or text")
	f.StringVar(&opts.Hooks, "hook", "", "hook(s) to map, e.g. resid_post.4 or resid_post.2,resid_post.4 (default: the last layer's resid_post)")
	f.BoolVar(&opts.Span, "span", false, "average the tokens of the word marked [[word]] in each line instead of taking the last token")
	f.IntVar(&opts.MaxK, "k-max", 8, "largest cluster count tried")
	f.StringArrayVar(&opts.Analogies, "analogy", nil, "analogy query a:b::c:? over the labels (repeatable)")
	f.StringArrayVar(&opts.Diffs, "diffs", nil, "difference x|y compared with the others at every layer (repeatable; more pairs may follow as arguments)")
	f.IntVar(&opts.Nearest, "nearest", 5, "answers per analogy")
	f.StringVar(&opts.Plot, "plot", "", "write the PCA map to FILE.png or FILE.svg")
	f.BoolVar(&opts.Force, "force", false, "replace an existing --plot or --html file")
	addHTMLFlag(f, &opts.HTML, nil)
	f.BoolVar(&opts.JSON, "json", false, "print JSON (schema in docs/geometry.md)")
	return cmd
}

// MapJSON is the document `map --json` prints (docs/geometry.md).
type MapJSON = analysis.MapResult

// plotPath is the --plot file of hook i of n: the path itself for one
// hook, the hook's short name before the extension for several.
func plotPath(path, hook string, n int) string {
	if n == 1 {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + shortHook(hook) + ext
}

func mapRun(opts *MapOptions) error {
	if err := checkHTMLFlag(opts.HTML, opts.Force); err != nil {
		return err
	}
	var items []analysis.MapItem
	if opts.Prompts != "" {
		b, err := readSmallFile(opts.Prompts, maxPromptFile)
		if err != nil {
			return fmt.Errorf("reading --prompts: %w", err)
		}
		if items, err = analysis.ParseMapItems(string(b)); err != nil {
			return fmt.Errorf("%s: %w", opts.Prompts, flagAdvice(err))
		}
	}
	m, err := opts.Model.load(false)
	if err != nil {
		return err
	}
	defer m.Close()
	if opts.Plot != "" {
		hs, err := parseMapHooks(opts.Hooks, m.NLayer())
		if err != nil {
			return err
		}
		for _, h := range hs {
			if err := checkOutFile(plotPath(opts.Plot, h, len(hs)), "--plot", opts.Force); err != nil {
				return err
			}
		}
	}
	doc, err := analysis.Map(opts.Model.engine(m), analysis.MapOptions{
		Model: opts.Model.Model, Items: items, Hooks: opts.Hooks, Span: opts.Span, Tokenize: opts.Model.tokenizeOptions(),
		MaxK: opts.MaxK, Analogies: opts.Analogies, Diffs: opts.Diffs, Nearest: opts.Nearest,
	})
	if err != nil {
		return flagAdvice(err)
	}
	if opts.Plot != "" {
		for _, h := range doc.Hooks {
			if err := writeMapPlot(plotPath(opts.Plot, h.Hook, len(doc.Hooks)), doc, &h); err != nil {
				return fmt.Errorf("writing the plot: %w", err)
			}
		}
	}
	if err := writeHTML(opts.HTML, report.KindMap, doc); err != nil {
		return err
	}
	if opts.JSON {
		err = writeJSON(opts.IO.Out, doc)
	} else {
		err = printMap(opts, doc)
	}
	if err == nil {
		noteHTML(opts.IO, opts.JSON, opts.HTML)
	}
	return err
}

// parseMapHooks resolves --hook as analysis.Map does, to name the plots
// before the run.
func parseMapHooks(spec string, nLayer int) ([]string, error) {
	if spec == "" {
		spec = fmt.Sprintf("resid_post.%d", nLayer-1)
	}
	var out []string
	for _, s := range strings.Split(spec, ",") {
		out = append(out, strings.TrimSpace(s))
	}
	return out, nil
}

func printMap(opts *MapOptions, doc *MapJSON) error {
	out := opts.IO.Out
	for _, w := range doc.Warnings {
		fmt.Fprintln(out, "note:", safetext.Terminal(w))
	}
	label := func(i int) string { return safetext.Terminal(clip(doc.Items[i].Label, 40)) }
	for _, h := range doc.Hooks {
		fmt.Fprintf(out, "\n== %s: %d prompts (%s), PCA explains %.1f%% + %.1f%% of the variance, k = %d ==\n",
			shortHook(h.Hook), len(doc.Items), doc.Vector, 100*h.Explained[0], 100*h.Explained[1], h.K)
		var rows [][]string
		for _, i := range h.Order {
			rows = append(rows, []string{label(i), fmt.Sprintf("%+.3f", h.PCA[i][0]), fmt.Sprintf("%+.3f", h.PCA[i][1]), fmt.Sprint(h.Clusters[i]), fmt.Sprintf("%.4g", h.Norms[i])})
		}
		if err := table(opts.IO, []string{"prompt (clustering order)", "PC1", "PC2", "cluster", "norm"}, rows); err != nil {
			return err
		}
		var sil []string
		for k := 2; k <= opts.MaxK; k++ {
			if s, ok := h.Silhouettes[k]; ok {
				sil = append(sil, fmt.Sprintf("k=%d %.3f", k, s))
			}
		}
		if len(sil) > 0 {
			fmt.Fprintln(out, "silhouette:", strings.Join(sil, ", "))
		}
		if n := len(h.Order); n <= 24 {
			header := []string{"cos"}
			for k := range h.Order {
				header = append(header, fmt.Sprint(k+1))
			}
			rows = nil
			for k, i := range h.Order {
				r := []string{fmt.Sprintf("%d %s", k+1, clip(label(i), 20))}
				for _, j := range h.Order {
					r = append(r, fmt.Sprintf("%.2f", h.Cosine[i][j]))
				}
				rows = append(rows, r)
			}
			fmt.Fprintln(out)
			if err := table(opts.IO, header, rows); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(out, "(the %d × %d cosine matrix is in --json)\n", n, n)
		}
		for _, a := range h.Analogies {
			var hits []string
			for _, x := range a.Nearest {
				hits = append(hits, fmt.Sprintf("%s %.3f", safetext.Terminal(x.Label), x.Cosine))
			}
			fmt.Fprintf(out, "analogy %s → %s\n", safetext.Terminal(a.Query), strings.Join(hits, ", "))
		}
	}
	if d := doc.Diffs; d != nil {
		fmt.Fprintf(out, "\n== differences at resid_post of every layer ==\n")
		for i, p := range d.Pairs {
			fmt.Fprintf(out, "[%d] %s\n", i+1, safetext.Terminal(p))
		}
		header := []string{"layer"}
		for i := range d.Pairs {
			header = append(header, fmt.Sprintf("‖[%d]‖", i+1))
		}
		for _, p := range d.Layers[0].Pairs {
			header = append(header, fmt.Sprintf("cos [%d],[%d]", p.I+1, p.J+1), fmt.Sprintf("dist [%d],[%d]", p.I+1, p.J+1))
		}
		var rows [][]string
		for _, l := range d.Layers {
			r := []string{fmt.Sprint(l.Layer)}
			for _, n := range l.Norms {
				r = append(r, fmt.Sprintf("%.4g", n))
			}
			for _, p := range l.Pairs {
				r = append(r, fmt.Sprintf("%.4f", p.Cosine), fmt.Sprintf("%.4g", p.Distance))
			}
			rows = append(rows, r)
		}
		if err := table(opts.IO, header, rows); err != nil {
			return err
		}
	}
	if opts.Plot != "" {
		for _, h := range doc.Hooks {
			fmt.Fprintf(out, "wrote %s\n", plotPath(opts.Plot, h.Hook, len(doc.Hooks)))
		}
	}
	return nil
}

// writeMapPlot draws the PCA coordinates of one hook with every point
// labelled and coloured by its cluster.
func writeMapPlot(path string, doc *MapJSON, h *analysis.MapHook) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s at %s (%s)", filepath.Base(doc.Model), shortHook(h.Hook), doc.Vector)
	p.X.Label.Text = fmt.Sprintf("PC1 (%.1f%% of the variance)", 100*h.Explained[0])
	p.Y.Label.Text = fmt.Sprintf("PC2 (%.1f%%)", 100*h.Explained[1])
	p.Add(plotter.NewGrid())
	pal, err := brewer.GetPalette(brewer.TypeQualitative, "Set1", 9)
	if err != nil {
		return err
	}
	colors := pal.Colors()
	for c := range max(h.K, 1) {
		var xy plotter.XYs
		var labels []string
		for i, k := range h.Clusters {
			if k == c {
				xy = append(xy, plotter.XY{X: h.PCA[i][0], Y: h.PCA[i][1]})
				// a plot is no terminal, but a label from a file may
				// still hold characters that draw nothing
				labels = append(labels, strings.ReplaceAll(safetext.Terminal(clip(doc.Items[i].Label, 30)), "\t", " "))
			}
		}
		if len(xy) == 0 {
			continue
		}
		s, err := plotter.NewScatter(xy)
		if err != nil {
			return err
		}
		col := colors[c%len(colors)]
		s.GlyphStyle.Color = col
		s.GlyphStyle.Radius = vg.Points(3.5)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(s)
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xy, Labels: labels})
		if err != nil {
			return err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Color = color.Black
			l.TextStyle[i].Font.Size = vg.Points(8)
		}
		l.Offset = vg.Point{X: vg.Points(5), Y: vg.Points(-3)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("cluster %d", c), s)
	}
	p.Legend.Top = true
	// room for the labels right of the points and for the legend
	xmin, xmax, ymin, ymax := p.X.Min, p.X.Max, p.Y.Min, p.Y.Max
	dx, dy := max(xmax-xmin, 1e-9), max(ymax-ymin, 1e-9)
	p.X.Min, p.X.Max = xmin-0.05*dx, xmax+0.25*dx
	p.Y.Min, p.Y.Max = ymin-0.08*dy, ymax+0.15*dy
	var c vg.CanvasWriterTo
	w, ht := 8*vg.Inch, 6*vg.Inch
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, ht), vgimg.UseDPI(plotDPI))}
	case ".svg":
		c = vgsvg.New(w, ht)
	default:
		return fmt.Errorf("%s: the plot must be a .png or .svg file", path)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(dc)
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
