"""Regenerate release/ from source/ for every assignment (``make release``).

    python -m utils.instructor.release [assignment ...]

The student versions are generated against a throwaway gradebook: the course's own ``gradebook.db``
may hold submissions of an assignment, and nbgrader refuses to regenerate an assignment that has some
("Cannot modify existing assignment"). Grading records the notebooks' cells in the real gradebook itself.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .course import REPO_ROOT, assignments, generate_release


def main(argv: list[str]) -> int:
    names = argv or assignments(REPO_ROOT)
    with tempfile.TemporaryDirectory(prefix="course-release-") as scratch:
        generate_release(REPO_ROOT, names, db_url=f"sqlite:///{Path(scratch) / 'gradebook.db'}")
    for name in names:
        print(f"release/{name}/ regenerated from source/{name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
