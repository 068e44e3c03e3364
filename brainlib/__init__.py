"""brainlib: the package behind the brain MRI StyleGAN workbook.

Importing it needs only torch and numpy; umap, nilearn and jupyter are imported
where they are used."""
import os

# OpenMP threads that spin while waiting make a 2-core CPU collapse (measured 25x slower
# training at 2 threads) as soon as anything else runs; passive waiting avoids that. Must be
# set before torch loads its OpenMP runtime; the user's choice wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from brainlib.config import RunConfig, preset  # noqa: E402 (after the OpenMP setting, which must come first)

__all__ = ["RunConfig", "preset"]
__version__ = "0.1.0"
