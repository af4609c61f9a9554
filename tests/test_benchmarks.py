"""The benchmark scripts run and report what they measured: the layer benchmark's rows and Markdown, the
benchmark page linking the committed results files, and the GPU check refusing a machine without CUDA.
(No timing is asserted: the machine is shared and noisy; the ratios are for people to read.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from dense_helpers import REPO


def _load_layers():
    """benchmarks/layers.py is a script folder, not an installed package: load it by path."""
    spec = importlib.util.spec_from_file_location("benchmark_layers", REPO / "benchmarks" / "layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


layers = _load_layers()


def test_layer_benchmark_rows_and_markdown():
    rows = layers.run(quick=True, repeats=1, only=["GroupNorm", "WSConv2d"], layouts=("contiguous",), progress=False,
                      batch=2)  # fmt: skip
    assert {r.layer for r in rows} == {"GroupNorm", "WSConv2d 3x3"}
    assert {r.shape[0] for r in rows} == {2}  # --batch sets N
    assert {r.pass_ for r in rows if r.layer == "WSConv2d 3x3"} == {"fwd", "fwd+bwd", "eval"}
    for r in rows:
        assert r.ours_ms > 0 and r.native_ms > 0
        assert r.ratio == pytest.approx(r.ours_ms / r.native_ms)
    text = layers.format_markdown(rows, "test machine")
    assert text.startswith("Measured on test machine.")
    assert text.count("| GroupNorm |") == sum(r.layer == "GroupNorm" for r in rows)
    assert all(f"- {note}:" in text for note in layers.NOTES)


def test_benchmark_page_links_every_committed_result_and_the_front_page_links_it():
    page = (REPO / "benchmarks" / "README.md").read_text()
    committed = (REPO / "benchmarks" / "results" / "layers_cpu.md").read_text().strip()
    assert "torch 2.14.1" in committed.splitlines()[0]
    for name in ("layers_cpu.md", "layers_cuda_h100_n64.md", "layers_cuda_h100_n8.md", "cuda_tests_h100.txt"):
        assert f"](results/{name})" in page and (REPO / "benchmarks" / "results" / name).is_file()
    assert "](benchmarks/" in (REPO / "README.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_a_machine_without_cuda(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", str(tmp_path / "out")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "no CUDA device: this script checks the GPU paths" in done.stderr
    assert not (tmp_path / "out" / "cuda_tests.txt").exists()
