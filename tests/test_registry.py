"""Plugin registry: built-ins, unknown names, and third-party discovery through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rlarena.registry import ALGORITHMS, ENVS, Registry, UnknownPluginError, get_algorithm, get_env


def test_builtins_are_registered():
    assert "ppo" in ALGORITHMS.names()
    for env in ("halfcheetah", "hopper", "walker2d", "ant", "humanoid", "invertedpendulum"):
        assert env in ENVS.names()


def test_unknown_name_lists_what_exists():
    with pytest.raises(UnknownPluginError) as info:
        get_algorithm("ppp")
    message = str(info.value)
    assert "unknown algorithm 'ppp'" in message
    assert "Did you mean 'ppo'?" in message
    assert "ppo" in message.split("Registered algorithms:")[1]
    with pytest.raises(UnknownPluginError, match="Registered environments: .*hopper"):
        get_env("hoper")


def test_duplicate_registration_is_refused():
    reg = Registry("thing", "rlarena.no-such-group")
    reg.register("a", object())
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", object())


def test_broken_plugin_is_reported_not_fatal(tmp_path):
    _write_dist(tmp_path, "brokenplugin", "rlarena.algorithms", "broken = brokenplugin")
    (tmp_path / "brokenplugin.py").write_text("raise RuntimeError('boom')\n")
    out = _run(
        tmp_path, "from rlarena.registry import ALGORITHMS as A; print(A.names()); print(A.load_errors)"
    )
    assert "'ppo'" in out and "boom" in out


def _write_dist(root, package: str, group: str, entry: str) -> None:
    info = root / f"{package}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")


def _run(path, code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(path), "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_third_party_plugins_are_discovered(tmp_path):
    """A package that only declares entry points (a class, and a module using the decorator) is found."""
    (tmp_path / "myplugin.py").write_text(
        textwrap.dedent(
            """
            from rlarena.registry import register_env

            class MyAlgo:  # registered by its entry-point name
                pass

            @register_env("my-env")
            def make_env(env_cfg, settings):
                raise NotImplementedError
            """
        )
    )
    _write_dist(tmp_path, "myplugin", "rlarena.algorithms", "my-algo = myplugin:MyAlgo")
    info = tmp_path / "myplugin-0.1.dist-info" / "entry_points.txt"
    info.write_text(info.read_text() + "\n[rlarena.envs]\nmine = myplugin\n")
    out = _run(
        tmp_path,
        "from rlarena.registry import list_algorithms, list_envs, ALGORITHMS\n"
        "print(list_algorithms()); print(list_envs()); print(ALGORITHMS.origin('my-algo'))",
    )
    assert "'my-algo'" in out and "'ppo'" in out
    assert "'my-env'" in out and "'hopper'" in out
    assert "entry point myplugin:MyAlgo" in out


def test_list_command(cli, tmp_path):
    out = cli("list", cwd=tmp_path).stdout
    assert "algorithms:" in out and "ppo" in out
    assert "environments:" in out and "invertedpendulum" in out
