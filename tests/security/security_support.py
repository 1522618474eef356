"""A panel client over real HTTP (httpx: the login form's CSRF token, cookies, a replayed
cookie) and the servers it talks to: gunicorn with an admin login, and the app in-process
under werkzeug's server (imported by name: tests are not a package)."""
from __future__ import annotations

import re
import subprocess
import sys
import threading

import httpx
from werkzeug.serving import make_server

from gunicorn_support import ROOT, Server

ADMIN, PASSWORD = "ada", "ada-password-123"
CSRF = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


class Panel:
    """One browser: its own cookie jar, redirects not followed (tests look at them)."""

    def __init__(self, base_url: str, cookie_header: str | None = None):
        """``cookie_header`` pins the Cookie header: what an attacker replays keeps its value
        whatever the server answers with Set-Cookie."""
        headers = {"Cookie": cookie_header} if cookie_header else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=20, follow_redirects=False)

    def csrf(self, path: str = "/admin/login") -> str:
        page = self.http.get(path)
        found = CSRF.search(page.text)
        assert found, f"no CSRF token on {path}: {page.status_code}"
        return found.group(1)

    def login(self, name: str = ADMIN, password: str = PASSWORD, **extra) -> httpx.Response:
        data = {"csrf_token": self.csrf(), "name": name, "password": password, **extra}
        return self.http.post("/admin/login", data=data)

    def logout(self) -> httpx.Response:
        return self.http.post("/admin/logout", data={"csrf_token": self.csrf("/admin/")})

    def copy(self) -> "Panel":
        """A second client replaying a copy of this one's cookies (a stolen cookie)."""
        header = "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
        return Panel(str(self.http.base_url), cookie_header=header)

    def opens_overview(self) -> bool:
        response = self.http.get("/admin/")
        assert response.status_code in (200, 302), response.status_code
        return response.status_code == 200

    def close(self) -> None:
        self.http.close()


def add_admin(env: dict, name: str = ADMIN, password: str = PASSWORD) -> None:
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "users", "create", name, "--admin",
                           "--password-stdin"], cwd=ROOT, env=env, input=password + "\n", capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def gunicorn(tmp_path_factory, name: str, **env) -> Server:
    """A migrated server with the admin login, not started (``with server.serving():``)."""
    workdir = tmp_path_factory.mktemp(name)
    server = Server(f"sqlite:///{workdir / 'runboard.db'}", workdir, name, workers=2,
                    env={"RUNBOARD_SECRET_KEY": "security-tests-secret-key-0123456789", **env})
    server.migrate()
    add_admin(server.env)
    return server


class InProcessServer:
    """The app under werkzeug's threaded server: real HTTP, and the test's own objects."""

    def __init__(self, app):
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="in-process-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
