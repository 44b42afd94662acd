"""JupyterHub configuration of the course: ``jupyterhub -f utils/instructor/hub/jupyterhub_config.py``.

Reads the deployment (accounts, folders, ports) from ``$COURSE_HUB_STATE/deployment.json``, written by
``python -m utils.instructor.hub up`` (:mod:`utils.instructor.hub.deployment`). For a class, change what
the README's "Running the course on a JupyterHub" lists: the authenticator, TLS, the bind address and
the spawner.
"""
import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from utils.instructor.hub.deployment import PROXY, Deployment  # noqa: E402

c = get_config()  # noqa: F821  provided by JupyterHub

deployment = Deployment.load(os.environ["COURSE_HUB_STATE"])
BIN = Path(deployment.python).parent
ROLES = Path(deployment.repo) / "utils" / "instructor" / "jupyter"
COURSE_ENV = {
    "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
    "PYTHONNOUSERSITE": "1",
    "JUPYTER_PATH": "",
}

# ---- where it listens: loopback only; for a class put TLS in front (README) or set ssl_cert/ssl_key.
c.JupyterHub.bind_url = f"http://127.0.0.1:{deployment.port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = deployment.hub_port
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{deployment.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [str(PROXY)]
c.JupyterHub.db_url = f"sqlite:///{deployment.hub_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(deployment.hub_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(deployment.hub_dir / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True

# ---- who may log in: the course's Unix accounts, checked by PAM. The grader account runs the
# formgrader service only and never logs in.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = set(deployment.students) | set(deployment.instructors)
c.Authenticator.admin_users = set(deployment.instructors)

c.JupyterHub.load_groups = {
    f"nbgrader-{deployment.course_id}": {"users": list(deployment.students)},
    f"formgrade-{deployment.course_id}": {"users": list(deployment.instructors)},
}
c.JupyterHub.load_roles = [{
    "name": f"grader-{deployment.course_id}",
    "description": "Instructors and TAs reach the course's formgrader.",
    "groups": [f"formgrade-{deployment.course_id}"],
    "scopes": [f"access:services!service={deployment.course_id}", f"list:services!service={deployment.course_id}"],
}]


class CourseSpawner(LocalProcessSpawner):
    """Each account's JupyterLab as that Unix user, in its home, with the student's JupyterLab configuration."""

    def get_env(self):
        env = super().get_env()
        env.update(COURSE_ENV)
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(deployment.jupyter_dir), str(ROLES / "student")])
        return env


c.JupyterHub.spawner_class = CourseSpawner
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# ---- the formgrader: a JupyterLab with every nbgrader plug-in, run as the grader account in the
# course directory, reached at /services/<course>/ by the formgrade-<course> group.
c.JupyterHub.services = [{
    "name": deployment.course_id,
    "url": f"http://127.0.0.1:{deployment.service_port}",
    "command": [str(BIN / "jupyterhub-singleuser"), f"--ServerApp.root_dir={deployment.course_dir}"],
    "user": deployment.grader,
    "cwd": str(deployment.course_dir),
    "oauth_no_confirm": True,
    "environment": {
        **COURSE_ENV,
        "HOME": str(Path("/home") / deployment.grader),
        "JUPYTERHUB_DEFAULT_URL": "/lab",
        "JUPYTER_CONFIG_PATH": os.pathsep.join([str(deployment.jupyter_dir), str(ROLES / "instructor")]),
    },
}]
