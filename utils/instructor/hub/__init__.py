"""The course on a JupyterHub: one JupyterLab per student, the nbgrader exchange, the formgrader for graders.

    python -m utils.instructor.hub up [--state DIR] [--port 8000]    # `make hub`: accounts, hub on loopback
    python -m utils.instructor.hub down [--state DIR]                # stop it, remove its accounts

The pieces are the ones universities run nbgrader with (nothing here replaces them):

* **JupyterHub** (PyPI ``jupyterhub``) behind ``configurable-http-proxy`` (npm, installed into this folder's
  ``node_modules`` by ``make hub-setup``), listening on 127.0.0.1 only for the demonstration.
* **Real Unix accounts** (:mod:`~utils.instructor.hub.accounts`): a group per role, one account per
  student, instructor and TA, and a grader account ``grader-<course>`` that owns the course directory
  (mode 700: source notebooks with solutions, the gradebook, every submission). PAM checks passwords;
  ``LocalProcessSpawner`` starts each user's JupyterLab as that user, in a home folder only they can read.
* **The course environment** (this repository's ``.venv``) is every server's environment. Students get the
  student JupyterLab of :mod:`utils.instructor.lab` (Assignment List and Validate; no formgrader); the
  formgrader runs as a hub service under the grader account, in the course directory, and the hub lets
  the ``formgrade-<course>`` group (instructors and TAs) reach it.
* **nbgrader's exchange**: a folder every account may write into (``ugo+rwx``, sticky), where nbgrader
  itself keeps submissions unreadable to other students (its ``inbound`` folder has no read bit).

The whole deployment is described by one JSON file (:class:`~utils.instructor.hub.deployment.Deployment`)
in the state folder; ``jupyterhub_config.py`` beside this file reads it.
"""
