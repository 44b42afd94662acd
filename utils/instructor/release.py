"""Regenerate release/ from source/ for every assignment (``make release``).

    python -m utils.instructor.release [assignment ...]
"""
from __future__ import annotations

import sys

from .course import REPO_ROOT, assignments, generate_release


def main(argv: list[str]) -> int:
    names = argv or assignments(REPO_ROOT)
    generate_release(REPO_ROOT, names)
    for name in names:
        print(f"release/{name}/ regenerated from source/{name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
