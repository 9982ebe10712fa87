"""lmconv: how language models converge during training, computed from checkpoints.

The package is thin on purpose: every chapter of the book calls these functions, and so does the CLI.
"""

__version__ = "0.1.0"
