"""A Jupyter server extension for the student's JupyterLab: the Assignment List says plainly when the
course hands notebooks out another way.

nbgrader's Assignment List reads the course's exchange folder. Where no exchange is set up (one
student's machine, a lab without JupyterHub), stock nbgrader answers with an error, and the panel
shows "Error fetching courses!" and three exchange errors. With this extension the panel shows the
course and, in place of the assignments, one plain sentence: where the notebooks are instead.
Once the exchange exists (see the README, "Running the course for a class"), nothing changes.

Enabled in the student configuration (``jupyter_server_config.d`` of the student role and of the
environment); it replaces the ``assignment_list_manager`` that nbgrader's assignment_list
extension registered.
"""
from __future__ import annotations

import os

from nbgrader.exchange import ExchangeFactory
from nbgrader.server_extensions.assignment_list.handlers import AssignmentList

NO_EXCHANGE = (
    "Your instructor hands the notebooks out another way (this machine has no nbgrader exchange for the "
    "course): open your assignment's notebook from the file browser, click Validate when you are done, "
    "and hand it in as your instructor asked.")


class CourseAssignmentList(AssignmentList):
    """nbgrader's Assignment List, with a plain answer when the course's exchange is not set up."""

    def _exchange_missing(self) -> tuple[bool, str]:
        """Whether the exchange folder is missing, and the course id of the server's folder."""
        with self.get_assignment_dir_config() as config:
            lister = ExchangeFactory(config=config).List(config=config)
            root = getattr(lister, "root", "")
            course_id = config.CourseDirectory.get("course_id", "") or ""
        return bool(root) and not os.path.isdir(root), course_id

    def list_courses(self):
        missing, course_id = self._exchange_missing()
        if missing:
            return {"success": True, "value": [course_id or "this course"]}
        return super().list_courses()

    def list_assignments(self, course_id=None):
        if self._exchange_missing()[0]:
            return {"success": False, "value": NO_EXCHANGE}
        return super().list_assignments(course_id=course_id)


def _jupyter_server_extension_points():
    return [{"module": "utils.instructor.student_lab"}]


def _load_jupyter_server_extension(serverapp):
    settings = serverapp.web_app.settings
    if "assignment_list_manager" not in settings:      # the Assignment List is not enabled
        return
    manager = CourseAssignmentList(parent=serverapp)
    manager.root_dir = serverapp.root_dir
    settings["assignment_list_manager"] = manager
    serverapp.log.info("Course Assignment List: a plain message where no exchange is set up")
