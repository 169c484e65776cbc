// Package contrast measures how two sets of prompts, A and B, differ inside a
// model, one component (hook) at a time, and turns the difference into
// directions that can steer the model.
//
// The input of Compute is two float32 matrices, one row per prompt (or per
// prompt and token position), holding one hook's activations. Compute
// returns:
//
//   - the mean difference Δμ = mean(A) − mean(B) and its norm;
//   - the projection of every row on the unit mean difference u = Δμ/‖Δμ‖,
//     their mean and spread per set;
//   - the separation: Cohen's d of those projections, the difference of the
//     set means in pooled standard deviations (a two-sample effect size);
//   - for pairs, the sign consistency: the fraction of pairs whose own
//     difference a_i − b_i points the way Δμ does, (a_i − b_i)·Δμ > 0;
//   - the leave-one-out accuracy of the mean-difference classifier (the
//     in-sample separation is optimistic when rows are few and wide);
//   - the first principal component, sign fixed so that A projects higher.
//
// Dataset readers (ReadPrompts, ReadPairs) and the llama.cpp control-vector
// file format (ControlVector, ReadControlVector) live here too. The package
// is pure Go: activations come from package llamacpp, and nothing here
// imports it.
//
// Activations stay float32; sums are accumulated in float64. A shape
// mismatch between the two sets is returned as an error; a length mismatch
// passed to a small helper is a programmer error and panics, as in gonum.
package contrast
