package cli

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/internal/outfile"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/brewer"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Heatmap layout. A panel is one heatmap (one kind for --pos each, every
// kind side by side otherwise); panels are stacked under a two-line header,
// with one colour scale on the right for all of them.
const (
	plotDPI       = 96
	plotCellW     = 0.42 * vg.Inch
	plotCellH     = 0.32 * vg.Inch
	plotLeft      = 1.0 * vg.Inch // y tick labels and axis label
	plotRight     = 0.3 * vg.Inch
	plotTitleH    = 0.35 * vg.Inch
	plotBottomP   = 1.5 * vg.Inch // rotated token labels
	plotBottomK   = 0.8 * vg.Inch // kind labels
	plotMinW      = 4 * vg.Inch
	plotMinH      = 2.2 * vg.Inch
	plotColorW    = 1.5 * vg.Inch
	plotColorBarW = 1.05 * vg.Inch // tick labels and the bar
	plotHeaderH   = 0.75 * vg.Inch
	plotGap       = 0.2 * vg.Inch // between panels
	plotNaNColor  = 0xb0
)

// patchPanel is one heatmap: z[layer row][column], NaN where nothing was
// patched.
type patchPanel struct {
	title   string
	columns []string
	layers  []int
	z       [][]float64
	tokens  bool // columns are token positions (rotated labels)
}

func (p *patchPanel) Dims() (c, r int)   { return len(p.columns), len(p.layers) }
func (p *patchPanel) Z(c, r int) float64 { return p.z[r][c] }
func (p *patchPanel) X(c int) float64    { return float64(c) }
func (p *patchPanel) Y(r int) float64    { return float64(r) }

// patchPlotSize returns the size of the whole picture for panels of cols
// columns and rows layers.
func patchPlotSize(panels, cols, rows int, tokens bool) (w, h vg.Length) {
	bottom := plotBottomK
	if tokens {
		bottom = plotBottomP
	}
	// long prompts and deep models get narrower cells, down to what a
	// tick label needs
	cw := max(0.18*vg.Inch, min(plotCellW, 25*vg.Inch/vg.Length(cols)))
	ch := max(0.12*vg.Inch, min(plotCellH, 12*vg.Inch/vg.Length(rows)))
	pw := max(plotMinW, plotLeft+plotRight+vg.Length(cols)*cw)
	ph := max(plotMinH, plotTitleH+bottom+vg.Length(rows)*ch)
	return pw + plotColorW, plotHeaderH + vg.Length(panels)*(ph+plotGap)
}

// patchPanels lays the results out as heatmaps.
func patchPanels(doc *PatchJSON) []*patchPanel {
	rowOf := map[int]int{}
	for i, l := range doc.Layers {
		rowOf[l] = i
	}
	grid := func(cols int) [][]float64 {
		z := make([][]float64, len(doc.Layers))
		for i := range z {
			z[i] = make([]float64, cols)
			for j := range z[i] {
				z[i][j] = math.NaN()
			}
		}
		return z
	}
	if doc.Positions == "all" || doc.Positions == "last" {
		p := &patchPanel{title: "every position at once", columns: doc.Kinds, layers: doc.Layers, z: grid(len(doc.Kinds))}
		if doc.Positions == "last" {
			p.title = "last position"
		}
		for _, r := range doc.Results {
			for j, k := range doc.Kinds {
				if k == r.Kind {
					p.z[rowOf[r.Layer]][j] = r.Normalized
				}
			}
		}
		return []*patchPanel{p}
	}
	// columns: the patched positions, in the corrupt prompt's order
	colOf := map[string]int{}
	var cols []string
	add := func(pp analysis.PatchPos) {
		k := fmt.Sprint(pp)
		if _, ok := colOf[k]; ok {
			return
		}
		colOf[k] = len(cols)
		label := posLabel(doc, pp)
		if pp.Clean < len(doc.Clean.Tokens) && pp.Corrupt < len(doc.Corrupt.Tokens) {
			if c, k := doc.Clean.Tokens[pp.Clean], doc.Corrupt.Tokens[pp.Corrupt]; c.ID != k.ID {
				label = fmt.Sprintf("%s→%s", strings.TrimSuffix(label, k.Piece)+c.Piece, k.Piece)
			}
		}
		// the plot fonts have no "▁": show spaces as "·"
		cols = append(cols, strings.ReplaceAll(label, "▁", "·"))
	}
	if doc.Positions == "each" {
		for i := range doc.Corrupt.Tokens {
			add(analysis.PatchPos{Clean: i, Corrupt: i})
		}
	}
	for _, r := range doc.Results {
		add(r.Positions[0])
	}
	var panels []*patchPanel
	for _, k := range doc.Kinds {
		p := &patchPanel{title: k, columns: cols, layers: doc.Layers, z: grid(len(cols)), tokens: true}
		for _, r := range doc.Results {
			if r.Kind == k {
				p.z[rowOf[r.Layer]][colOf[fmt.Sprint(r.Positions[0])]] = r.Normalized
			}
		}
		panels = append(panels, p)
	}
	return panels
}

// writePatchPlot draws the heatmaps of doc into path, a .png or .svg file:
// blue below 0 (worse than the corrupt run), white at 0 (no effect), red
// at 1 (the clean run restored), on a scale symmetric around 0 that always
// includes −1 and 1.
func writePatchPlot(path string, doc *PatchJSON) error {
	panels := patchPanels(doc)
	lim := 1.0
	for _, r := range doc.Results {
		if !math.IsNaN(r.Normalized) && !math.IsInf(r.Normalized, 0) {
			lim = max(lim, math.Abs(r.Normalized))
		}
	}
	cmap := newDiverging(-lim, lim)
	pal := cmap.Palette(255)
	hasNaN := false
	for _, pn := range panels {
		for _, row := range pn.z {
			for _, v := range row {
				hasNaN = hasNaN || math.IsNaN(v)
			}
		}
	}

	w, h := patchPlotSize(len(panels), len(panels[0].columns), len(doc.Layers), panels[0].tokens)
	var c vg.CanvasWriterTo
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

	// header: what was patched and what the colours mean
	style := func(size vg.Length) text.Style {
		return text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, size), XAlign: draw.XCenter, YAlign: draw.YTop, Handler: plot.DefaultTextHandler}
	}
	title := fmt.Sprintf("Activation patching: %s", filepath.Base(doc.Model))
	sub := fmt.Sprintf("%s, normalised: 0 = corrupt run, 1 = clean run", doc.MetricDesc)
	dc.FillText(style(14), vg.Point{X: w / 2, Y: h - 0.12*vg.Inch}, title)
	dc.FillText(style(10), vg.Point{X: w / 2, Y: h - 0.42*vg.Inch}, strings.ReplaceAll(sub, "▁", "·"))

	body := draw.Crop(dc, 0, -plotColorW, 0, -plotHeaderH)
	ph := (h - plotHeaderH) / vg.Length(len(panels))
	for i, pn := range panels {
		top := vg.Length(i) * ph
		pc := draw.Crop(body, 0, 0, (h-plotHeaderH)-top-ph+plotGap, -top)
		p := plot.New()
		p.Title.Text = pn.title
		hm := plotter.NewHeatMap(pn, pal)
		hm.Min, hm.Max = -lim, lim
		hm.NaN = color.Gray{Y: plotNaNColor}
		p.Add(hm)
		p.X.Padding, p.Y.Padding = 0, 0
		p.Y.Label.Text = "layer"
		// every layer labelled up to 40 layers, every k-th beyond
		every := (len(pn.layers) + 39) / 40
		var yt []plot.Tick
		for r, l := range pn.layers {
			t := plot.Tick{Value: float64(r)}
			if r%every == 0 {
				t.Label = fmt.Sprint(l)
			}
			yt = append(yt, t)
		}
		p.Y.Tick.Marker = plot.ConstantTicks(yt)
		var xt []plot.Tick
		for j, col := range pn.columns {
			xt = append(xt, plot.Tick{Value: float64(j), Label: col})
		}
		p.X.Tick.Marker = plot.ConstantTicks(xt)
		if pn.tokens {
			if i == len(panels)-1 {
				p.X.Label.Text = "position: token of the corrupt prompt (clean→corrupt where they differ; · is a space)"
			}
			p.X.Tick.Label.Rotation = math.Pi / 2
			p.X.Tick.Label.XAlign = draw.XRight
			p.X.Tick.Label.YAlign = draw.YCenter
		} else {
			p.X.Label.Text = "component"
		}
		p.Draw(pc)
	}

	// the colour scale
	cb := plot.New()
	cb.Title.Text = "normalised"
	if hasNaN {
		cb.Title.Text = "normalised\n(grey: not patched)"
	}
	cb.Add(&plotter.ColorBar{ColorMap: cmap, Vertical: true})
	cb.HideX()
	cb.Y.Padding = 0
	cb.Y.Tick.Marker = plot.ConstantTicks(colorTicks(lim))
	cbc := draw.Crop(dc, w-plotColorW+0.15*vg.Inch, -(plotColorW - 0.15*vg.Inch - plotColorBarW), 0.6*vg.Inch, -plotHeaderH-0.2*vg.Inch)
	cb.Draw(cbc)

	// a finished file replaces path: never a half-written picture, and
	// the temporary file is removed on an error or an interrupt
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
	if testHook != nil {
		testHook("plot written")
	}
	return f.Commit()
}

// colorTicks labels the colour scale at −lim, −1, 0, 1, lim, with what 0 and
// 1 mean.
func colorTicks(lim float64) []plot.Tick {
	ts := []plot.Tick{{Value: -1, Label: "-1"}, {Value: 0, Label: "0 corrupt"}, {Value: 1, Label: "1 clean"}}
	if lim > 1.05 {
		ts = append(ts, plot.Tick{Value: -lim, Label: fmt.Sprintf("%.2g", -lim)}, plot.Tick{Value: lim, Label: fmt.Sprintf("%.2g", lim)})
	}
	return ts
}

// diverging is a continuous colour map through ColorBrewer's RdBu: blue
// at Min, white halfway, red at Max (TransformerLens's patching plots use
// the same colours).
type diverging struct {
	min, max, alpha float64
	anchors         []color.Color // blue to red
}

func newDiverging(min, max float64) *diverging {
	rdbu, err := brewer.GetPalette(brewer.TypeDiverging, "RdBu", 11)
	if err != nil {
		panic(err) // a palette of the library itself
	}
	cs := rdbu.Colors()
	anchors := make([]color.Color, len(cs))
	for i, c := range cs {
		anchors[len(cs)-1-i] = c // RdBu runs red to blue
	}
	return &diverging{min: min, max: max, alpha: 1, anchors: anchors}
}

func (d *diverging) At(v float64) (color.Color, error) {
	switch {
	case math.IsNaN(v) || v > d.max:
		return nil, palette.ErrOverflow
	case v < d.min:
		return nil, palette.ErrUnderflow
	}
	t := (v - d.min) / (d.max - d.min) * float64(len(d.anchors)-1)
	i := min(int(t), len(d.anchors)-2)
	f := t - float64(i)
	a, b := color.NRGBAModel.Convert(d.anchors[i]).(color.NRGBA), color.NRGBAModel.Convert(d.anchors[i+1]).(color.NRGBA)
	mix := func(x, y uint8) uint8 { return uint8(math.Round(float64(x) + f*(float64(y)-float64(x)))) }
	return color.NRGBA{R: mix(a.R, b.R), G: mix(a.G, b.G), B: mix(a.B, b.B), A: uint8(math.Round(255 * d.alpha))}, nil
}

func (d *diverging) Max() float64           { return d.max }
func (d *diverging) SetMax(v float64)       { d.max = v }
func (d *diverging) Min() float64           { return d.min }
func (d *diverging) SetMin(v float64)       { d.min = v }
func (d *diverging) Alpha() float64         { return d.alpha }
func (d *diverging) SetAlpha(alpha float64) { d.alpha = alpha }

func (d *diverging) Palette(n int) palette.Palette {
	cs := make([]color.Color, n)
	for i := range cs {
		c, _ := d.At(d.min + (d.max-d.min)*float64(i)/float64(max(1, n-1)))
		cs[i] = c
	}
	return palette.Palette(divergingPalette(cs))
}

type divergingPalette []color.Color

func (p divergingPalette) Colors() []color.Color { return p }
