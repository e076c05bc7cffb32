"""Where the repository's own files are, for tests (the package itself never looks there)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
