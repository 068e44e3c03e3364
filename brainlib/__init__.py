"""brainlib: the package behind the brain MRI StyleGAN workbook.

Importing it needs only torch and numpy; umap, nilearn and jupyter are imported
where they are used."""
import os

# OpenMP threads that spin while waiting make a 2-core CPU collapse (measured 25x slower
# training at 2 threads) as soon as anything else runs; passive waiting avoids that. Must be
# set before torch loads its OpenMP runtime; the user's choice wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib  # noqa: E402
import importlib.abc  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402

from brainlib.config import RunConfig, preset  # noqa: E402

# Modules that moved into subpackages keep their old names for notebooks and scripts:
# `import brainlib.metrics` gives the very module brainlib.eval.metrics (imported on first use).
MOVED_MODULES = {**{f"brainlib.{m}": f"brainlib.eval.{m}"
                    for m in ("metrics", "features", "c2st", "memorisation", "embed", "evaluate")},
                 "brainlib.pipeline": "brainlib.batch.pipeline", "brainlib.summary": "brainlib.batch.summary"}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED_MODULES else None

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module):
        pass  # already executed under its new name


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())  # before an editable install's finder, which may know old paths

__all__ = ["RunConfig", "preset"]
__version__ = "0.1.0"
