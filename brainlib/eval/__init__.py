"""Evaluation of trained generators: every metric beside its real-vs-real floor.

metrics (FID, KID, SWD, MS-SSIM, precision/recall, usefulness), features (the slice encoder and
Inception), c2st (classifier two-sample test), memorisation (nearest training images), embed
(UMAP / t-SNE of encoder features), evaluate (all of them for a run, written to eval.json);
report and verdicts read eval.json back (its table, and the headline judged against the floors)."""
