import pytest

from client_support import make_venv, worker_token
from gunicorn_support import Server


@pytest.fixture(scope="session")
def client_python(tmp_path_factory):
    """The python of a virtualenv with only ``client/`` installed (built once per run)."""
    return make_venv(tmp_path_factory.mktemp("client-venv") / "venv")


def _server(request, tmp_path, name: str, **options):
    url = (f"sqlite:///{tmp_path / 'runboard.db'}" if request.param == "sqlite"
           else request.getfixturevalue("empty_postgres_url"))
    return Server(url, tmp_path, name, workers=2, **options)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    server = _server(request, tmp_path, "client")
    server.migrate()
    with server.serving():
        yield server


@pytest.fixture
def token(server):
    return worker_token(server)
