// Package analysis holds lldiff's analyses (Compare, Patch, Contrast, …) as
// a library: each takes typed options, already parsed and validated, and a
// models.Engine, and returns a typed result whose JSON tags are the
// documented schemas (docs/*.md). Nothing here prints, parses flags or
// knows cobra; long runs report through a Progress.
//
// The engine is llama.cpp (package llamacpp) for the command line and the
// plain Go reference forward pass (package models/reference) in tests, so
// the analyses' unit tests run with CGO_ENABLED=0.
package analysis
