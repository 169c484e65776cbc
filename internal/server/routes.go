package server

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/report"
)

// assets are the page of the server: index.html, serve.js and serve.css.
// The views are the report's (report.Assets), served under /static/.
//
//go:embed assets
var assets embed.FS

func (s *Server) routes() {
	mux := http.NewServeMux()
	page, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded folder is fixed at build time
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { serveFile(w, r, page, "index.html") })
	mux.HandleFunc("GET /static/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		switch name {
		case "app.js", "app.css":
			serveFile(w, r, report.Assets(), name)
		case "serve.js", "serve.css":
			serveFile(w, r, page, name)
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /api/info", s.handleInfo)
	mux.HandleFunc("/api/compare", s.handleRun(parseCompare))
	mux.HandleFunc("/api/patch", s.handleRun(parsePatch))
	mux.HandleFunc("/api/contrast", s.handleRun(parseContrast))
	mux.HandleFunc("/api/render", s.handleRender)
	s.mux = mux
}

// serveFile serves one embedded file (the embedded files have no
// modification time: ETags are not worth it for a local page).
func serveFile(w http.ResponseWriter, r *http.Request, fsys fs.FS, name string) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(b))
}

// handleInfo answers GET /api/info: the model and the limits, for the page.
func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	l := s.cfg.Limits
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"model": s.cfg.Model,
		"limits": map[string]any{
			"max-body": l.MaxBody, "max-prompt": l.MaxPrompt, "max-tokens": l.MaxTokens, "max-prompts": l.MaxPrompts,
			"max-run": l.MaxRun.String(), "queue": l.Queue,
		},
	})
}

// handleRender answers POST /api/render?kind=KIND: the body is a document
// the API returned, the answer the --html page for it, as a download. It
// runs nothing; the page uses it to save what it shows.
func (s *Server) handleRender(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBodyLimit(w, r, maxDocument)
	if !ok {
		return
	}
	kind := report.Kind(r.URL.Query().Get("kind"))
	var doc any
	switch kind {
	case report.KindCompare:
		doc = new(analysis.CompareResult)
	case report.KindPatch:
		doc = new(analysis.PatchResult)
	case report.KindContrast:
		doc = new(analysis.ContrastResult)
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("kind=%q: use compare, patch or contrast", kind))
		return
	}
	// decoded into the document's type: only its own fields reach the page
	if err := json.Unmarshal(body, doc); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("the body is not a %s document: %v", kind, err))
		return
	}
	var b bytes.Buffer
	if err := report.Write(&b, kind, doc); err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", string(kind)+".html"))
	_, _ = w.Write(b.Bytes())
}

// maxDocument is the largest document /api/render takes: larger than any
// request (a document holds tokens, rankings and lens cells for every
// layer), still far from filling the memory.
const maxDocument = 64 << 20
