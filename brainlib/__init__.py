"""brainlib: the package behind the brain MRI StyleGAN workbook.

Importing it needs only torch and numpy; umap, nilearn and jupyter are imported
where they are used."""
from brainlib.config import RunConfig, preset

__all__ = ["RunConfig", "preset"]
__version__ = "0.1.0"
