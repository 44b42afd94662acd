"""The course's nbgrader preprocessors, one per module, as configured in nbgrader_config.py.

Release phase (``c.GenerateAssignment.preprocessors``): :class:`ContinueAfterErrors`.
Sanitize phase (``c.Autograde.sanitize_preprocessors``): :class:`RestoreGradeCells`,
:class:`OverwriteCellsInPlace`. Autograde phase (``c.Autograde.autograde_preprocessors``):
:class:`PrepareTrustedTests`, :class:`SandboxedExecute`, :class:`FilterHarmlessStderr`,
:class:`ApplyTrustedVerdicts`, :class:`SanitizeUntrustedHTML` (also in the HTML exporter of the
formgrader and the feedback, ``c.HTMLExporter.preprocessors``). Rendering only (the HTML exporter,
after the sanitiser): :class:`MarkdownMathToMathML`. Feedback (``c.GenerateFeedback.preprocessors``, after
nbgrader's GetGrades): :class:`FeedbackGrades`. :class:`KeepManualGrades` is nbgrader's SaveAutoGrades keeping
a grader's manual grade while the answer is unchanged (nbgrader_patches.py installs its method on SaveAutoGrades).
All of them run in the trusted grading process.
"""
from utils.grading.preprocessors.apply_trusted_verdicts import ApplyTrustedVerdicts
from utils.grading.preprocessors.continue_after_errors import ContinueAfterErrors
from utils.grading.preprocessors.feedback_grades import FeedbackGrades
from utils.grading.preprocessors.filter_harmless_stderr import FilterHarmlessStderr
from utils.grading.preprocessors.keep_manual_grades import KeepManualGrades
from utils.grading.preprocessors.markdown_math_to_mathml import MarkdownMathToMathML
from utils.grading.preprocessors.overwrite_cells_in_place import OverwriteCellsInPlace
from utils.grading.preprocessors.prepare_trusted_tests import PrepareTrustedTests
from utils.grading.preprocessors.restore_grade_cells import RestoreGradeCells
from utils.grading.preprocessors.sandboxed_execute import SandboxedExecute
from utils.grading.preprocessors.sanitize_untrusted_html import SanitizeUntrustedHTML

__all__ = ["ApplyTrustedVerdicts", "ContinueAfterErrors", "FeedbackGrades", "FilterHarmlessStderr",
           "KeepManualGrades", "MarkdownMathToMathML", "OverwriteCellsInPlace", "PrepareTrustedTests",
           "RestoreGradeCells", "SandboxedExecute", "SanitizeUntrustedHTML"]
