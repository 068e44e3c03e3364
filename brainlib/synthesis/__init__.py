"""Synthesis from a trained run: seeded sampling, truncation, mixing and interpolation
(sampling), latent directions (directions), synthetic datasets (export), projection of real
slices (projection), NC-to-AD counterfactuals (counterfactual) and the explorer widget (explorer)."""
