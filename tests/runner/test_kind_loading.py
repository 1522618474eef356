"""Kinds from outside (SPEC §5): RUNBOARD_KINDS paths and ``runboard.kinds`` entry points
are registered beside the built-ins, by the app and by every gunicorn worker; a kind that
cannot be loaded stops start-up with one line naming it.

Kind modules are written per test into a directory put first on ``sys.path`` (and removed,
with the modules, afterwards); entry points come from a hand-written ``.dist-info`` there,
or from the packaged example (docs/examples/runboard-kind-example) installed with
``pip install --target`` into a directory of its own.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gunicorn_support import Server, free_port
from repositories.errors import ConfigurationError
from runner_support import AUTH, finished, make_app, session_of, wait_for
from webapp import create_app
from webapp.jobs import BUILTIN_KINDS
from webapp.runner import get_kinds
from webapp.runner.kinds import JobKind, load_kinds
from webapp.store import close_repository

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "runboard-kind-example"

KIND_MODULE = """
    import pydantic
    from webapp.runner.kinds import JobKind, Params

    class EchoParams(Params):
        word: str = "hi"
        times: int = 1

    def run(ctx, params):
        for n in range(params.times):
            if ctx.should_stop():
                break
            ctx.progress(current=n + 1, total=params.times)
        return {"echo": [params.word] * params.times}

    ECHO = JobKind("ext.echo", run, EchoParams, "Say a word")
    OTHER = JobKind("ext.other", run, EchoParams)
    KINDS = [ECHO, OTHER]
    AS_TUPLE = (ECHO, OTHER)

    class Holder:
        class inner:
            kinds = [ECHO]

    NOT_A_KIND = {"name": "ext.dict"}
    MIXED = [ECHO, "ext.string"]
    BAD_NAME = JobKind("Bad Name", run, EchoParams)
    BATCH = JobKind("batch", run, EchoParams)
    ECHO_AGAIN = JobKind("ext.echo", run, EchoParams)
    TWICE = [JobKind("ext.dup", run, EchoParams), JobKind("ext.dup", run, EchoParams)]
    NO_MODEL = JobKind("ext.nomodel", run, dict)
"""


@pytest.fixture
def kinds_dir(tmp_path, monkeypatch):
    """A directory first on sys.path; ``write(name, source)`` adds a module to it.  The
    modules imported from it are forgotten afterwards."""
    where = tmp_path / "kinds"
    where.mkdir()
    monkeypatch.syspath_prepend(str(where))
    before = set(sys.modules)

    def write(name: str, source: str) -> Path:
        path = where / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return path
    write.path = where
    yield write
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def extkinds(kinds_dir):
    kinds_dir("extkinds", KIND_MODULE)
    return importlib.import_module("extkinds")


def dist_info(where: Path, dist: str, entry_points: dict[str, str]) -> None:
    """A fake installed distribution ``dist`` publishing ``entry_points`` (name → value)."""
    info = where / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[runboard.kinds]\n{lines}")
    importlib.invalidate_caches()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# -- RUNBOARD_KINDS paths --------------------------------------------------------------

def test_nothing_configured_is_no_extra_kind():
    assert load_kinds("") == () and load_kinds(" , ,") == ()


def test_a_single_kind_a_list_a_tuple_and_a_dotted_attribute_load(extkinds):
    assert load_kinds("extkinds:ECHO") == (extkinds.ECHO,)
    assert load_kinds("extkinds:KINDS") == (extkinds.ECHO, extkinds.OTHER)
    assert load_kinds("extkinds:AS_TUPLE") == (extkinds.ECHO, extkinds.OTHER)
    assert load_kinds("extkinds:Holder.inner.kinds") == (extkinds.ECHO,)


def test_blank_entries_and_whitespace_are_ignored_and_the_same_kind_counts_once(extkinds):
    assert load_kinds(" , extkinds:ECHO ,, extkinds:OTHER , extkinds:KINDS, ") == (extkinds.ECHO, extkinds.OTHER)


@pytest.mark.parametrize("path, reason", [
    ("no_such_kinds_module:KINDS", "module 'no_such_kinds_module' not found"),
    ("extkinds.sub:KINDS", "module 'extkinds.sub' not found"),
    ("extkinds:MISSING", "attribute 'MISSING' missing from extkinds"),
    ("extkinds:Holder.nope.kinds", "attribute 'nope' missing from extkinds:Holder"),
    ("extkinds:NOT_A_KIND", "it is not a JobKind (from webapp.runner) but dict"),
    ("extkinds:MIXED", "item 1 is not a JobKind (from webapp.runner) but str"),
    ("extkinds:BAD_NAME", "kind name 'Bad Name' is not [a-z0-9_.-]{1,64}"),
    ("extkinds:NO_MODEL", "kind 'ext.nomodel': params is not a pydantic model class"),
    ("extkinds:TWICE", "kind 'ext.dup' is already defined by RUNBOARD_KINDS extkinds:TWICE"),
    ("extkinds", "malformed path (use module:attribute"),
    ("extkinds:", "malformed path"),
    (":KINDS", "malformed path"),
    ("extkinds:KINDS()", "malformed path"),
    ("extkinds/x:KINDS", "malformed path"),
])
def test_each_bad_path_is_one_line_naming_it_and_why(extkinds, path, reason):
    with pytest.raises(ConfigurationError) as caught:
        load_kinds(f"extkinds:ECHO, {path}")
    assert one_line(caught).startswith(f"RUNBOARD_KINDS: {path}: {reason}")


def test_a_path_with_a_line_break_is_quoted_so_the_message_stays_one_line(extkinds):
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("extkinds:KI\nNDS")
    assert one_line(caught).startswith("RUNBOARD_KINDS: 'extkinds:KI\\nNDS': malformed path")


def test_a_module_that_raises_while_importing_is_named_with_the_error_type_and_first_line(kinds_dir):
    kinds_dir("explodes", 'raise RuntimeError("kind setup failed\\nsecond line of detail")\n')
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("explodes:KINDS")
    assert one_line(caught) == "RUNBOARD_KINDS: explodes:KINDS: importing it raised RuntimeError: kind setup failed"


def test_a_missing_dependency_of_the_module_is_not_mistaken_for_the_module_missing(kinds_dir):
    kinds_dir("needs_dep", "import no_such_dependency_xyz\n")
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("needs_dep:KINDS")
    assert one_line(caught) == ("RUNBOARD_KINDS: needs_dep:KINDS: importing it raised "
                                "ModuleNotFoundError: No module named 'no_such_dependency_xyz'")


def test_two_paths_defining_one_name_are_both_named(extkinds):
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("extkinds:KINDS,extkinds:ECHO_AGAIN")
    assert one_line(caught) == ("RUNBOARD_KINDS: extkinds:ECHO_AGAIN: kind 'ext.echo' is already defined by "
                                "RUNBOARD_KINDS extkinds:KINDS")


def test_a_kind_reusing_a_built_in_name_is_refused(extkinds):
    assert load_kinds("extkinds:BATCH") == (extkinds.BATCH,)          # no built-ins given, no clash
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("extkinds:BATCH", BUILTIN_KINDS)
    assert one_line(caught) == ("RUNBOARD_KINDS: extkinds:BATCH: kind 'batch' is already defined by "
                                "the built-in kinds")


# -- entry points ----------------------------------------------------------------------

def test_entry_points_are_loaded_after_the_paths(extkinds, kinds_dir):
    dist_info(kinds_dir.path, "acme-kinds", {"echo": "extkinds:ECHO", "more": "extkinds:Holder.inner.kinds",
                                             "other": "extkinds:OTHER [extra]"})
    assert load_kinds("") == (extkinds.ECHO, extkinds.OTHER)
    assert load_kinds("extkinds:OTHER") == (extkinds.OTHER, extkinds.ECHO)


@pytest.mark.parametrize("value, reason", [
    ("no_such_kinds_module:KINDS", "no_such_kinds_module:KINDS: module 'no_such_kinds_module' not found"),
    ("extkinds:MISSING", "extkinds:MISSING: attribute 'MISSING' missing from extkinds"),
    ("extkinds:NOT_A_KIND", "extkinds:NOT_A_KIND: it is not a JobKind"),
    ("extkinds", "extkinds: malformed path"),
])
def test_a_bad_entry_point_is_named_with_its_distribution(extkinds, kinds_dir, value, reason):
    dist_info(kinds_dir.path, "acme-kinds", {"broken": value})
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("")
    assert one_line(caught).startswith(f"entry point runboard.kinds broken (acme-kinds): {reason}")


def test_an_entry_point_clashing_with_a_path_or_a_built_in_names_both(extkinds, kinds_dir):
    dist_info(kinds_dir.path, "acme-kinds", {"again": "extkinds:ECHO_AGAIN"})
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("extkinds:ECHO")
    assert one_line(caught) == ("entry point runboard.kinds again (acme-kinds): extkinds:ECHO_AGAIN: kind "
                                "'ext.echo' is already defined by RUNBOARD_KINDS extkinds:ECHO")
    dist_info(kinds_dir.path, "zed-kinds", {"batch": "extkinds:BATCH"})
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("", BUILTIN_KINDS)
    assert one_line(caught) == ("entry point runboard.kinds batch (zed-kinds): extkinds:BATCH: kind 'batch' "
                                "is already defined by the built-in kinds")


def test_two_entry_points_clashing_name_both(extkinds, kinds_dir):
    dist_info(kinds_dir.path, "acme-kinds", {"a": "extkinds:ECHO"})
    dist_info(kinds_dir.path, "zed-kinds", {"b": "extkinds:ECHO_AGAIN"})
    with pytest.raises(ConfigurationError) as caught:
        load_kinds("")
    assert one_line(caught) == ("entry point runboard.kinds b (zed-kinds): extkinds:ECHO_AGAIN: kind 'ext.echo' "
                                "is already defined by entry point runboard.kinds a (acme-kinds)")


# -- the app ---------------------------------------------------------------------------

@pytest.fixture
def apps():
    made = []

    def build(**settings):
        app = make_app("memory://", **settings)
        made.append(app)
        return app
    yield build
    for app in made:
        close_repository(app)


def submit(client, kind, params):
    response = client.post("/api/v1/sessions", json={"kind": kind, "params": params}, headers=AUTH)
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_create_app_registers_the_configured_kinds_beside_the_built_ins_and_runs_them(extkinds, apps):
    app = apps(RUNBOARD_KINDS="extkinds:KINDS")
    with app.app_context():
        assert get_kinds().names() == sorted([k.name for k in BUILTIN_KINDS] + ["ext.echo", "ext.other"])
        assert get_kinds().get("ext.echo") is extkinds.ECHO
    client = app.test_client()
    session_id = submit(client, "ext.echo", {"word": "ho", "times": 3})
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "completed" and done["result"] == {"echo": ["ho", "ho", "ho"]}
    assert done["progress"]["current"] == done["progress"]["total"] == 3
    bad = client.post("/api/v1/sessions", json={"kind": "ext.echo", "params": {"times": "x"}}, headers=AUTH)
    assert bad.status_code == 400 and "params.times" in bad.json["error"]["message"]


@pytest.mark.parametrize("kinds, message", [
    ("no_such_kinds_module:KINDS", "RUNBOARD_KINDS: no_such_kinds_module:KINDS: module 'no_such_kinds_module' not found"),
    ("extkinds:BATCH", "RUNBOARD_KINDS: extkinds:BATCH: kind 'batch' is already defined by the built-in kinds"),
])
def test_create_app_with_a_kind_it_cannot_load_raises_naming_it(extkinds, kinds, message):
    with pytest.raises(ConfigurationError) as caught:
        create_app({"RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off", "RUNBOARD_KINDS": kinds})
    assert one_line(caught) == message


# -- the packaged example ----------------------------------------------------------------

@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example installed as pip would into a site directory of its own (built from a
    copy, since setuptools writes build/ and *.egg-info next to the sources)."""
    base = tmp_path_factory.mktemp("example")
    shutil.copytree(EXAMPLE, base / "src")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                           str(base / "site"), str(base / "src")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return base / "site"


@pytest.fixture
def example(example_site, monkeypatch):
    monkeypatch.syspath_prepend(str(example_site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("runboard_kind_example", None)
    importlib.invalidate_caches()


def test_the_installed_example_is_found_by_its_entry_point_and_runs_to_completion(example, apps):
    (kind,) = load_kinds("")
    assert isinstance(kind, JobKind) and kind.name == "word_count"
    client = apps().test_client()
    session_id = submit(client, "word_count", {"text": "to be or not to be", "repeat": 3})
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "completed", done
    assert done["result"] == {"passes": 3, "words": 18, "distinct": 4, "top": {"to": 6, "be": 6, "or": 3, "not": 3}}
    assert done["progress"]["current"] == done["progress"]["total"] == 3


def test_the_example_honours_a_stop_with_the_counts_so_far(example, apps):
    client = apps().test_client()
    session_id = submit(client, "word_count", {"text": "lorem ipsum " * 5000, "repeat": 1_000_000})
    wait_for(lambda: session_of(client, session_id)["progress"].get("current"))
    assert client.post(f"/api/v1/sessions/{session_id}/stop", headers=AUTH).status_code == 202
    done = wait_for(lambda: finished(client, session_id))
    assert done["state"] == "stopped"
    assert 0 < done["result"]["passes"] < 1_000_000 and done["result"]["words"] == 10_000 * done["result"]["passes"]


# -- gunicorn ----------------------------------------------------------------------------

def _with_path(*directories: Path) -> str:
    return os.pathsep.join([*map(str, directories), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.mark.parametrize("kinds, reason", [
    ("no_such_kinds_module:KINDS", "module 'no_such_kinds_module' not found"),
    ("explodes:KINDS", "importing it raised RuntimeError: kind setup failed"),
])
def test_gunicorn_with_a_bad_kind_stops_the_master_with_one_line_naming_it(kinds_dir, kinds, reason):
    kinds_dir("explodes", 'raise RuntimeError("kind setup failed\\nmore")\n')
    env = {**os.environ, "RUNBOARD_DATABASE_URL": "memory://", "RUNBOARD_SCHEDULER": "off",
           "RUNBOARD_KINDS": kinds, "RUNBOARD_BIND": f"127.0.0.1:{free_port()}",
           "PYTHONPATH": _with_path(kinds_dir.path)}
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn_config.py", "wsgi:app"], cwd=ROOT,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"runboard: configuration error: RUNBOARD_KINDS: {kinds}: {reason}"], done.stderr


def test_every_gunicorn_worker_runs_the_installed_example(example_site, tmp_path):
    server = Server(f"sqlite:///{tmp_path / 'runboard.db'}", tmp_path, "kinds", workers=2,
                    env={"PYTHONPATH": _with_path(example_site)})
    server.migrate()
    with server.serving() as serving:
        for worker in sorted(serving.worker_pids()):
            created = serving.submit("word_count", {"text": "a b a", "repeat": 2}, worker=worker)
            done = serving.wait_state(created["id"], ("completed", "failed", "stopped"))
            assert done["state"] == "completed" and done["result"]["words"] == 6, done
            assert done["meta"]["runner"]["pid"] == worker, done["meta"]
