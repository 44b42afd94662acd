"""The check core: what every ``check_*`` is built from. Runs in the student's kernel and in the grader.

* :mod:`~utils.checks.exercise` — :class:`Case`, :class:`Exercise` and the produce/judge loop;
* :mod:`~utils.checks.from_scratch` — the watch for library calls a from-scratch answer must not make;
* :mod:`~utils.checks.compare` — the one comparison (type, shape, dtype, NaN, values) and tolerances;
* :mod:`~utils.checks.diagnose` — known mistakes and how an output is matched to one;
* :mod:`~utils.checks.characterise` — where and how an output differs when no known mistake explains it;
* :mod:`~utils.checks.rules` — the notebook's rules a call enforces (inputs unchanged, dtypes, part shapes);
* :mod:`~utils.checks.feedback` — what a student reads: a passed result or a failure report;
* :mod:`~utils.checks.seeding` — per-case random generators (never the global RNG state);
* :mod:`~utils.checks.registry` — which assignment module defines each check.

May import: the standard library and numpy (torch only inside adapters, on first use, and in
from_scratch once the kernel has imported it). Never imports an assignment package, nbgrader or
anything under :mod:`utils.grading`.
"""
