"""Where a course keeps its gradebook."""
from __future__ import annotations

import os
from pathlib import Path


def sqlite_gradebook_url(root: str | os.PathLike) -> str:
    """The SQLite gradebook ``<root>/gradebook.db``; a writer waits up to 60 s on a lock instead of failing."""
    return f"sqlite:///{Path(root) / 'gradebook.db'}?timeout=60"
