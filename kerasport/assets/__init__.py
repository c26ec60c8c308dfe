"""The embedded default: a DeepVariant-shaped small model and the real examples it was built on.

Both come from DeepVariant's public NA12878 test reads (chr20:10,000,000-10,100,000);
`scripts/build_default_assets.py` regenerates them from `../shared`.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
DEFAULT_MODEL = ASSETS / "model.keras"
DEFAULT_EXAMPLES = ASSETS / "examples.npz"
