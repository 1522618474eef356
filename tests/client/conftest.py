"""Client fixtures: one real gunicorn per store and test module (tests tell their
sessions apart by kind), a worker token, and a virtualenv with only ``client/``."""
import pytest

from client_support import make_venv, worker_token
from gunicorn_support import Server


@pytest.fixture(scope="session")
def client_python(tmp_path_factory):
    """The python of a virtualenv with only ``client/`` installed (built once per run)."""
    return make_venv(tmp_path_factory.mktemp("client-venv") / "venv")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"client-{request.param}")
    url = (f"sqlite:///{workdir / 'runboard.db'}" if request.param == "sqlite"
           else request.getfixturevalue("module_postgres_url"))
    server = Server(url, workdir, "client", workers=2)
    server.migrate()
    with server.serving():
        yield server


@pytest.fixture(scope="module")
def token(server):
    return worker_token(server)
