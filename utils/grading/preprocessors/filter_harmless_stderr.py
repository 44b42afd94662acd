"""FilterHarmlessStderr: drop library warnings and progress bars from the stderr of code cells.

nbgrader gives 0 points to a test cell with any stderr output, so these lines would zero
correct work. Runs after execution, before the verdicts and the scores are taken.
"""
from __future__ import annotations

import re

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

# Lines that libraries print on stderr while a correct answer runs.
HARMLESS_STDERR = [
    r"^.*\b\w*Warning: .*$",              # "…/functional.py:12: UserWarning: …"
    r"^\s+warnings\.warn\(.*$",           # the source line Python prints under a warning
    r"^\s*return _VF\..*$",
    r"^.*\d+%\|.*\|.*(it/s|s/it|\?it/s).*$",  # tqdm progress bars
    r"^\s*$",
]


class FilterHarmlessStderr(NbGraderPreprocessor):
    """Remove known-harmless stderr lines (library warnings, progress bars) from code cell outputs."""

    patterns = List(Unicode(), default_value=HARMLESS_STDERR,
                    help="Regular expressions; a stderr line matching one of them is removed.").tag(config=True)

    def preprocess(self, nb, resources):
        compiled = [re.compile(p) for p in self.patterns]
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            kept = []
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    text = output.get("text", "")
                    if isinstance(text, list):
                        text = "".join(text)
                    lines = [line for line in re.split(r"[\r\n]", text)
                             if not any(p.match(line) for p in compiled)]
                    if not lines:
                        continue
                    output["text"] = "\n".join(lines) + "\n"
                kept.append(output)
            cell.outputs = kept
        return nb, resources
