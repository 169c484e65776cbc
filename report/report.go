// Package report renders the JSON document of an lldiff command (compare,
// patch, contrast, vec, params, map) as one self-contained HTML page: the
// page's HTML, its CSS and JavaScript (assets/app.css, assets/app.js, embedded) and the
// document itself, inlined as JSON. The page makes no request: no CDN, no
// web fonts, no images from elsewhere, and a Content-Security-Policy that
// forbids them. It opens from disk in any current browser.
//
// The JavaScript draws every view with its own SVG; it is also served by
// `lldiff serve` (Assets), where window.lldiff.render(element, kind, doc)
// draws a document the server returned.
package report

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"io/fs"
	"strings"
)

// Kind names the command whose document a page shows.
type Kind string

// The kinds of document the page can show.
const (
	KindCompare  Kind = "compare"
	KindPatch    Kind = "patch"
	KindContrast Kind = "contrast"
	KindVec      Kind = "vec"
	KindParams   Kind = "params"
	KindMap      Kind = "map"
)

// Kinds lists the kinds Write accepts.
var Kinds = []Kind{KindCompare, KindPatch, KindContrast, KindVec, KindParams, KindMap}

//go:embed assets/app.js assets/app.css
var assets embed.FS

// Assets returns the page's front-end: app.js and app.css, the same code
// Write inlines. app.js defines window.lldiff.render(element, kind, doc).
func Assets() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded folder is fixed at build time
	}
	return sub
}

// csp allows the page its own inline style and script, images made from
// data: URLs, and nothing else: no request can leave the page.
const csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data: blob:; base-uri 'none'; form-action 'none'"

// Write writes the self-contained page for doc, the JSON document of the
// command kind (analysis.CompareResult for KindCompare, and so on).
func Write(w io.Writer, kind Kind, doc any) error {
	known := false
	for _, k := range Kinds {
		known = known || k == kind
	}
	if !known {
		return fmt.Errorf("report: unknown kind %q (known: %v)", kind, Kinds)
	}
	data, err := inlineJSON(doc)
	if err != nil {
		return fmt.Errorf("report: encoding the %s document: %w", kind, err)
	}
	js, err := fs.ReadFile(assets, "assets/app.js")
	if err != nil {
		return err
	}
	css, err := fs.ReadFile(assets, "assets/app.css")
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	fmt.Fprintf(&b, "<meta http-equiv=\"Content-Security-Policy\" content=\"%s\">\n", csp)
	fmt.Fprintf(&b, "<title>lldiff %s%s</title>\n", kind, html.EscapeString(titleModel(data)))
	b.WriteString("<style>\n")
	b.Write(css)
	b.WriteString("</style>\n</head>\n<body>\n")
	b.WriteString("<div id=\"lldiff-root\" class=\"lldiff\"><noscript>This report draws its views with JavaScript; the data is in the page source, as JSON.</noscript></div>\n")
	fmt.Fprintf(&b, "<script id=\"lldiff-data\" type=\"application/json\" data-kind=\"%s\">", html.EscapeString(string(kind)))
	b.Write(data)
	b.WriteString("</script>\n<script>\n")
	b.Write(js)
	b.WriteString("\n</script>\n<script>window.lldiff.boot(document.getElementById(\"lldiff-root\"), document.getElementById(\"lldiff-data\"));</script>\n</body>\n</html>\n")
	_, err = w.Write(b.Bytes())
	return err
}

// inlineJSON encodes doc for a <script type="application/json"> element.
// encoding/json escapes <, > and & as \u003c, \u003e and \u0026, and U+2028
// and U+2029, so that no text in the document (a prompt holding
// "</script>" or "<!--") can end the element or change how it is parsed;
// JSON.parse reads the escapes back as the same characters.
func inlineJSON(doc any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	data := bytes.TrimRight(b.Bytes(), "\n")
	if bytes.ContainsAny(data, "<>") {
		// cannot happen with SetEscapeHTML; refuse rather than write a
		// page that a prompt could break out of
		return nil, fmt.Errorf("the encoded document holds < or > unescaped")
	}
	return data, nil
}

// titleModel returns " — NAME" for an encoded document with a "model"
// field, the file name of the model, or "".
func titleModel(data []byte) string {
	var m struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(data, &m) != nil || m.Model == "" {
		return ""
	}
	name := m.Model
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return " — " + name
}
