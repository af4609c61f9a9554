"""Packaging: the pins in environment.yml are exactly those of pyproject.toml, every dependency is
pinned, and the two entry points exist as the README says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.\-+]+)$")


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    pins = {}
    for req in reqs:
        m = PIN.match(req)
        assert m, f"pyproject.toml: {req!r} is not pinned with =="
        pins[m.group(1).lower()] = m.group(2)
    return pins


def _environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {}
    for req in pip:
        if req.startswith("-e"):
            continue
        m = PIN.match(req)
        assert m, f"environment.yml: {req!r} is not pinned with =="
        pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_pins_equal_pyproject_pins():
    assert _environment_pins() == _pyproject_pins()


def test_torch_pins_are_the_supported_ones():
    pins = _pyproject_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_python_version_agrees():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"].startswith(">=3.11")


def test_make_targets_and_ci_entry_point():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test:", "reproduce:"):
        assert re.search(rf"^{target}", makefile, re.M), f"Makefile lacks the {target} target"
    assert "venv" in makefile and "pip install" in makefile, "make must create .venv and install by itself"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_reproduce_can_replace_the_committed_results():
    """`make reproduce PAPER=x UPDATE_COMMITTED=1` is the documented way to replace the committed results
    from another machine: the Makefile passes it on to run_all as --update-committed."""
    import subprocess

    def dry_run(*args: str) -> str:
        # --no-print-directory: under `make test` the inner make would add "make[1]: Leaving directory" lines
        cmd = ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "reproduce", *args]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip().splitlines()[-1]

    assert dry_run("PAPER=normprop", "UPDATE_COMMITTED=1").endswith("run_all --paper normprop --update-committed")
    assert "--update-committed" not in dry_run("PAPER=normprop")
    assert dry_run("DATA=/data/fmnist").endswith("run_all --paper all --data /data/fmnist")
