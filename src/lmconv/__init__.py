"""lmconv: how language models converge during training, computed from checkpoints.

The package is thin on purpose: every chapter of the book calls these functions, and so does the CLI.
"""

import warnings as _warnings

__version__ = "0.1.0"  # the one home of the version (pyproject reads it); a release is tagged v{__version__}
REPOSITORY = "https://github.com/lmconv/lmconv"  # the one home of the address (see lmconv.book.identity)
RELEASE_TAG = f"v{__version__}"

# transformers and huggingface_hub import tqdm.auto, which in a Jupyter kernel without ipywidgets warns once,
# at import, into the reader's cell output. Our bars are text bars, so import it first with that warning off.
with _warnings.catch_warnings():
    _warnings.filterwarnings("ignore", message="IProgress not found")
    import tqdm.auto  # noqa: F401
