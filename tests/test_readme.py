"""The front page: its quick-start block runs as written, it stays a front page (at most 15 KB), and every
relative link in it points at a file or folder that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_is_a_front_page_of_at_most_15_kb():
    assert len(README.read_bytes()) <= 15 * 1024


def test_quick_start_runs_as_written(tmp_path):
    blocks = _python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    script = tmp_path / "quick_start.py"
    script.write_text(blocks[0], encoding="utf-8")
    # a fresh interpreter outside the checkout: only what `import normcore` gives is available
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_relative_links_resolve():
    text = README.read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t]
    assert links, "no relative links found: the pattern is wrong"
    missing = [t for t in links if not (REPO / t).exists()]
    assert not missing, f"README.md links to missing paths: {missing}"
