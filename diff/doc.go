// Package diff compares the activations of two prompts, A and B, captured
// from the same model: per-vector metrics (Norm, Dot, Dist, RelDist,
// Cosine, Unit, SubTo: lldiff's one home of vector math, which contrast,
// analysis and the reference engine use too), the choice of token
// positions to compare (ParsePositions) and of layers (ParseLayers), a
// ranking of hooks by how much they change (Compare, Rank, ByLayer), the
// neurons that change most within one hook (TopNeurons), and a rank
// correlation to compare two rankings (Spearman).
//
// Activations stay float32; sums are accumulated in float64. The square of a
// float32 neither overflows nor underflows to zero in float64, so no scaling
// is needed for norms and dot products of float32 vectors.
//
// A length mismatch between two slices passed to a helper is a programmer
// error and panics, as in gonum. A mismatch between two captures (a missing
// hook, different widths, a position out of range) is a user error and is
// returned as an error by Compare.
package diff
