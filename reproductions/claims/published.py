"""The published numbers of each paper (``papers/<paper>/published.yaml``), validated and looked up by id.

Every entry names its source (paper section, ``owner/repo:path`` or URL) and a confidence tag
(``paper``, ``repo``, ``secondary``, ``unverified``, ``not_found``; see ``papers/schema.json``). An
entry whose value the sources do not give has ``value: null`` and a ``note`` saying so, so reports
can write "the paper gives no number" instead of inventing one.

>>> from reproductions.claims.published import published_value
>>> published_value("group_norm", "gn.table2.bn.2")["value"]
34.7

Command line: ``python -m reproductions.claims.published [PAPER [ID]]`` lists the papers, the ids of
one paper, or prints one entry; ``--check`` validates every file.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import sys
from collections import Counter
from functools import cache
from typing import Any

from reproductions.claims.provenance import REPO_ROOT

__all__ = [
    "PAPERS",
    "PAPERS_DIR",
    "SCHEMA_PATH",
    "all_papers",
    "load_published",
    "published_setting",
    "published_value",
    "validate_published",
]

PAPERS_DIR = REPO_ROOT / "papers"
SCHEMA_PATH = PAPERS_DIR / "schema.json"
_FILE = "published.yaml"


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


PAPERS = ("batch_norm", "layer_norm", "instance_norm", "group_norm", "weight_standardization", "normprop")
"""The project's papers, in report order: the one list (``papers/<paper>/``, ``reproductions/<paper>/``,
``notebooks/<paper>.ipynb``; the two JSON schemas repeat it and a test keeps them equal)."""


def all_papers() -> list[str]:
    """The papers of :data:`PAPERS` that have a ``papers/<paper>/published.yaml``, sorted."""
    return sorted(p for p in PAPERS if (PAPERS_DIR / p / _FILE).is_file())


def validate_published(data: dict[str, Any], paper: str | None = None) -> None:
    """Raise ``jsonschema.ValidationError`` if ``data`` breaks ``papers/schema.json``, or ``ValueError``
    for what the schema cannot say: ids must be unique and start with ``<id_prefix>.``, and the file
    must belong to ``paper`` (its folder name) when given."""
    import jsonschema

    jsonschema.validate(data, _schema())
    if paper is not None and data["paper"] != paper:
        raise ValueError(f"papers/{paper}/{_FILE} says paper: {data['paper']!r}; it must be {paper!r}")
    ids = [e["id"] for e in data["entries"]]
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"{data['paper']}: duplicate entry ids {dupes}; every id must be unique")
    prefix = data["id_prefix"] + "."
    stray = [i for i in ids if not i.startswith(prefix)]
    if stray:
        raise ValueError(f"{data['paper']}: ids {stray} do not start with the file's id_prefix {prefix!r}")


@cache
def _load(paper: str) -> dict[str, Any]:
    import yaml

    path = PAPERS_DIR / paper / _FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no published numbers for paper {paper!r} (no {path}); available: {', '.join(all_papers())}"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when libyaml is there
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    validate_published(data, paper)
    return data


def load_published(paper: str) -> dict[str, Any]:
    """The validated contents of ``papers/<paper>/published.yaml`` (a fresh copy: mutate it freely).
    Raises ``FileNotFoundError`` naming the available papers for an unknown one."""
    return copy.deepcopy(_load(paper))


def published_value(paper: str, entry_id: str) -> dict[str, Any]:
    """The entry ``entry_id`` of ``paper``: a dict with ``value`` (a number, or ``None`` when the
    sources give none; ``note`` then says why), ``metric``, ``higher_is_better``, ``source``,
    ``confidence`` and ``origin``. Raises ``KeyError`` listing the closest ids."""
    entries = {e["id"]: e for e in _load(paper)["entries"]}
    if entry_id not in entries:
        close = difflib.get_close_matches(entry_id, list(entries), n=5, cutoff=0.6)
        hint = f" Closest ids: {', '.join(close)}." if close else ""
        raise KeyError(
            f"no entry {entry_id!r} in papers/{paper}/{_FILE}.{hint} "
            f"List them with: python -m reproductions.claims.published {paper}"
        )
    return copy.deepcopy(entries[entry_id])


def published_setting(paper: str, name: str) -> dict[str, Any]:
    """The setting ``name`` (e.g. ``"imagenet.batch_size"``) of ``paper``: ``value``, ``source``,
    ``confidence`` (and ``note``). Raises ``KeyError`` listing the closest names."""
    settings = _load(paper)["settings"]
    if name not in settings:
        close = difflib.get_close_matches(name, list(settings), n=5, cutoff=0.6)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise KeyError(f"no setting {name!r} in papers/{paper}/{_FILE}.{hint}")
    return copy.deepcopy(settings[name])


def _describe(entry: dict[str, Any]) -> str:
    value = "no number (see note)" if entry["value"] is None else entry["value"]
    lines = [f"{entry['id']}: {value}  [{entry['confidence']}]"]
    keys = ("metric", "method", "setting", "table", "source", "origin", "note")
    lines += [f"  {key}: {entry[key]}" for key in keys if key in entry]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Look up the published numbers of the six papers.")
    parser.add_argument("paper", nargs="?", help="e.g. group_norm (omit to list the papers)")
    parser.add_argument("id", nargs="?", help="an entry id, e.g. gn.table2.bn.2 (omit to list the ids)")
    parser.add_argument("--check", action="store_true", help="validate every published.yaml and exit")
    args = parser.parse_args(argv)
    if args.check:
        for paper in all_papers():
            n = len(_load(paper)["entries"])
            print(f"{paper}: {n} entries, valid")
        return 0
    try:
        if args.paper is None:
            print("\n".join(all_papers()))
        elif args.id is None:
            for entry in _load(args.paper)["entries"]:
                value = "null" if entry["value"] is None else entry["value"]
                print(f"{entry['id']:<60} {value!s:>12}  {entry['confidence']}")
        else:
            print(_describe(published_value(args.paper, args.id)))
    except (KeyError, FileNotFoundError) as err:
        print(err.args[0], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
