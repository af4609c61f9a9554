"""The paper cards and published numbers (papers/): schema, ids, cards, and traceability of every
number to the reference document papers/published_numbers.md (a verbatim copy of the project's
shared reference)."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from reproductions.claims import published as pub
from reproductions.claims.provenance import REPO_ROOT

REFERENCE = pub.PAPERS_DIR / "published_numbers.md"
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "published_numbers.md"
PAPERS = json.loads(pub.SCHEMA_PATH.read_text())["properties"]["paper"]["enum"]
SECTION_PAPER = dict(enumerate(PAPERS, start=1))  # "## 1. Batch Normalization" ... "## 6. Normalization Propagation"
TAGS = {"paper", "repo", "secondary", "unverified", "not_found"}

# Columns of the reference tables that describe a configuration, not a result.
CONFIG_COLUMN = re.compile(
    r"^(resolution|crops|models|img/gpu|im/gpu|images/gpu|lr schd|schedule|multi-grid|aspp|image pooling|weights)$",
    re.IGNORECASE,
)
_NUM = r"[+−-]?\d+(?:\.\d+)?(?:·10\^\d+)?%?"
_NUMERIC_CELL = re.compile(rf"^{_NUM}(?:\s*/\s*{_NUM})*$")
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:·10\^\d+)?")


# --------------------------------------------------------------------------------------------------
# a small parser of the reference document's markdown tables
# --------------------------------------------------------------------------------------------------
@dataclass
class Table:
    paper: str
    line: int
    header: list[str]
    rows: list[list[str]]


def _to_float(token: str) -> float:
    token = token.replace("−", "-").rstrip("%")
    if "·10^" in token:
        mantissa, exponent = token.split("·10^")
        return float(mantissa) * 10 ** int(exponent)
    return float(token)


def cell_numbers(cell: str) -> list[float]:
    """The numbers of a result cell ("**23.6**", "72.2%", "31.0·10^6", "−10.6", "73.3 / 90.7");
    [] for a label or a cell mixing text and numbers ("2x (180k)", "— (never reaches 72.2%)")."""
    text = cell.replace("**", "").strip()
    if not _NUMERIC_CELL.match(text):
        return []
    return [_to_float(t) for t in re.findall(_NUM, text)]


def _split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def sections(text: str) -> dict[str, str]:
    """The text of each paper's section ("## N. Title" up to the next "## ")."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("## "):
            m = re.match(r"^## (\d)\. ", line)
            current = SECTION_PAPER.get(int(m.group(1))) if m else None
        if current is not None:
            out.setdefault(current, []).append(line)
    return {paper: "\n".join(lines) for paper, lines in out.items()}


def tables(text: str) -> list[Table]:
    """Every markdown table, with the paper whose section holds it (None outside the six)."""
    found: list[Table] = []
    current = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            m = re.match(r"^## (\d)\. ", line)
            current = SECTION_PAPER.get(int(m.group(1))) if m else None
        is_table = (
            line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1])
        )
        if not is_table:
            i += 1
            continue
        header = _split_row(line)
        rows = []
        j = i + 2
        while j < len(lines) and lines[j].lstrip().startswith("|"):
            rows.append(_split_row(lines[j]))
            j += 1
        found.append(Table(current, i + 1, header, rows))
        i = j
    return found


def table_numbers(table: Table) -> list[tuple[float, str]]:
    """(number, where) for every result cell of a table, header and configuration columns excluded."""
    out = []
    for row in table.rows:
        for col, cell in enumerate(row):
            head = table.header[col].replace("**", "").strip() if col < len(table.header) else ""
            if CONFIG_COLUMN.match(head):
                continue
            for value in cell_numbers(cell):
                out.append((value, f"line {table.line} row {row[0]!r} column {head!r}"))
    return out


def _numbers_in(obj: object) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int | float):
        return [float(obj)]
    if isinstance(obj, dict):
        return [v for x in obj.values() for v in _numbers_in(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in _numbers_in(x)]
    return []


def yaml_numbers(paper: str) -> list[float]:
    data = pub.load_published(paper)
    values = [e["value"] for e in data["entries"] if e["value"] is not None]
    return values + [v for s in data["settings"].values() for v in _numbers_in(s["value"])]


def _contains(values: list[float], x: float) -> bool:
    return any(math.isclose(x, v, rel_tol=1e-9, abs_tol=1e-12) for v in values)


@pytest.fixture(scope="module")
def reference_text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# the parser itself (so that a broken parser cannot make the traceability tests pass vacuously)
# --------------------------------------------------------------------------------------------------
SYNTHETIC = """\
## 4. Group Normalization
| images/GPU | 32 | 2 |
|---|---|---|
| BN | 23.6 | **34.7** |
| GN − BN | +0.5 | −10.6 |

| case | schedule | im/GPU | box AP |
|---|---|---|---|
| R-50-FPN, GN | 2x (180k) | 2 | 40.3 / 35.7 |
| Inception | — (never reaches 72.2%) | 2 | 31.0·10^6 |
| BN-x5 | 1x | 8 | 72.2% |

## Known gaps
| x | 99.9 |
|---|---|
| y | 12.5 |
"""


def test_parser_extracts_result_cells_only():
    found = tables(SYNTHETIC)
    assert [t.paper for t in found] == ["group_norm", "group_norm", None]
    assert [v for v, _ in table_numbers(found[0])] == [23.6, 34.7, 0.5, -10.6]
    # schedule and im/GPU are configuration columns; mixed text cells are labels
    assert [v for v, _ in table_numbers(found[1])] == [40.3, 35.7, 31.0e6, 72.2]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("**23.72**", [23.72]), ("4.9%", [4.9]), ("13.3·10^6", [13.3e6]), ("−0.8", [-0.8]), ("+4.8", [4.8]),
     ("73.3 / 90.7", [73.3, 90.7]), ("–", []), ("R-50-FPN", []), ("1e-3 (Adam)", []), ("2x (180k)", [])],
)  # fmt: skip
def test_cell_numbers(cell, expected):
    assert cell_numbers(cell) == pytest.approx(expected)


def test_traceability_check_detects_a_missing_number(reference_text):
    """Drop one GN entry and the table check must report exactly its number."""
    gn = [t for t in tables(reference_text) if t.paper == "group_norm"]
    numbers = [v for t in gn for v, _ in table_numbers(t)]
    values = yaml_numbers("group_norm")
    values.remove(34.7)
    missing = [x for x in numbers if not _contains(values, x)]
    assert missing == [34.7]


# --------------------------------------------------------------------------------------------------
# schema and ids
# --------------------------------------------------------------------------------------------------
def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(pub.SCHEMA_PATH.read_text()))


def test_every_paper_has_a_folder():
    assert pub.all_papers() == sorted(PAPERS)


@pytest.mark.parametrize("paper", PAPERS)
def test_published_yaml_validates(paper):
    raw = yaml.safe_load((pub.PAPERS_DIR / paper / "published.yaml").read_text(encoding="utf-8"))
    pub.validate_published(raw, paper)
    assert raw["card"] == "README.md" and (pub.PAPERS_DIR / paper / raw["card"]).is_file()


def test_ids_are_unique_across_papers():
    ids = [e["id"] for p in PAPERS for e in pub.load_published(p)["entries"]]
    assert len(ids) == len(set(ids))
    prefixes = [pub.load_published(p)["id_prefix"] for p in PAPERS]
    assert len(set(prefixes)) == len(PAPERS)


@pytest.mark.parametrize("paper", PAPERS)
def test_confidence_tags_and_notes(paper):
    data = pub.load_published(paper)
    items = data["entries"] + list(data["settings"].values())
    assert {x["confidence"] for x in items} <= TAGS
    for item in items:
        if item["confidence"] == "unverified":
            assert "unverified" in item.get("note", "").lower(), item
        if item["value"] is None:
            assert item.get("note"), item


def _gn_raw() -> dict:
    return pub.load_published("group_norm")  # a fresh, mutable copy


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d["entries"][0].pop("note", None) or d["entries"][0].update(value=None), jsonschema.ValidationError),
        (lambda d: d["entries"][0].update(confidence="not_found"), jsonschema.ValidationError),
        (lambda d: d["entries"][0].update(confidence="maybe"), jsonschema.ValidationError),
        (lambda d: d["entries"][0].pop("source"), jsonschema.ValidationError),
        (lambda d: d["entries"][0].update(origin="blog"), jsonschema.ValidationError),
        (lambda d: d["settings"]["imagenet.epochs"].update(value=None), jsonschema.ValidationError),
        (lambda d: d["entries"].append(copy.deepcopy(d["entries"][0])), ValueError),
        (lambda d: d["entries"][0].update(id="bn.table1.gn"), ValueError),
    ],
    ids=["null-without-note", "not_found-with-value", "unknown-tag", "no-source", "unknown-origin",
         "null-setting-not-tagged", "duplicate-id", "wrong-prefix"],
)  # fmt: skip
def test_validation_rejects_bad_files(mutate, error):
    data = _gn_raw()
    mutate(data)
    with pytest.raises(error):
        pub.validate_published(data, "group_norm")


def test_validation_rejects_a_file_in_the_wrong_folder():
    with pytest.raises(ValueError, match="must be 'batch_norm'"):
        pub.validate_published(_gn_raw(), "batch_norm")


# --------------------------------------------------------------------------------------------------
# traceability to the reference document
# --------------------------------------------------------------------------------------------------
# How many result cells the parser finds per section: pins the parser to the reference document
# (a parser that silently finds nothing would make the next test pass vacuously).
TABLE_NUMBER_COUNTS = {
    "batch_norm": 25,  # Figure 3 table (LR, steps, accuracy) + Figure 4 table
    "layer_norm": 56,  # Tables 2 and 3
    "instance_norm": 6,  # train.lua defaults
    "group_norm": 75,  # Tables 1-8
    "weight_standardization": 32,  # ImageNet, COCO, VOC and ModelNet40 README tables
    "normprop": 22,  # the recalled test-error table
}


@pytest.mark.parametrize("paper", PAPERS)
def test_every_reference_table_number_is_in_the_yaml(paper, reference_text):
    found = [(v, where) for t in tables(reference_text) if t.paper == paper for v, where in table_numbers(t)]
    assert len(found) == TABLE_NUMBER_COUNTS[paper], f"parser found {len(found)} result cells for {paper}"
    values = yaml_numbers(paper)
    missing = [f"{v:g} ({where})" for v, where in found if not _contains(values, v)]
    assert not missing, f"papers/{paper}/published.yaml lacks: " + "; ".join(missing)


# Cell-by-cell map of every result table of the reference document to the ids that hold its numbers:
# the table (found by its paper and header), the label of each row (the cells before the first
# result column, configuration columns excluded) -> row key, and per result column an id template
# ({row}; {part} for "top-1 / top-5" cells). "settings:<name>" points into `settings:`.
@dataclass(frozen=True)
class TableMap:
    paper: str
    header: tuple[str, ...]
    rows: dict[str, str]
    columns: dict[int, str]
    parts: tuple[str, ...] = ("",)


def _clean(cell: str) -> str:
    return cell.replace("**", "").replace("\\*", "*").replace("`", "").strip()


_GN3 = {i + 1: f"gn.table3.{{row}}.{g}" for i, g in enumerate((64, 32, 16, 8, 4, 2, 1))}
_GN8 = {1: "gn.table8.{row}.32f_8c.{part}", 2: "gn.table8.{row}.32f_4c.{part}", 3: "gn.table8.{row}.64f_4c.{part}"}
TABLE_MAPS = [
    TableMap("batch_norm", ("Model", "Initial LR", "Steps to 72.2%", "Max accuracy"),
             {"Inception": "inception", "BN-Baseline (BN before each nonlinearity)": "bn_baseline",
              "BN-x5 (BN + §4.2.1 modifications)": "bn_x5", "BN-x30": "bn_x30", "BN-x5-Sigmoid": "bn_x5_sigmoid"},
             {1: "settings:imagenet.initial_lr.{row}", 2: "bn.fig3.{row}.steps_to_72_2", 3: "bn.fig3.{row}.max_acc"}),
    TableMap("batch_norm", ("Model", "Resolution", "Crops", "Models", "Top-1 err", "Top-5 err"),
             {"GoogLeNet ensemble": "googlenet_ensemble", "Deep Image low-res": "deep_image_low_res",
              "Deep Image high-res": "deep_image_high_res", "Deep Image ensemble": "deep_image_ensemble",
              "BN-Inception single crop": "bn_inception_single_crop",
              "BN-Inception multicrop": "bn_inception_multicrop", "BN-Inception ensemble": "bn_inception_ensemble"},
             {4: "bn.fig4.{row}.top1", 5: "bn.fig4.{row}.top5"}),
    TableMap("layer_norm", ("Model", "Caption R@1", "R@5", "R@10", "Mean r", "Image R@1", "R@5", "R@10", "Mean r"),
             {"Sym (Vendrov et al.)": "sym", "OE (Vendrov et al.)": "oe", "OE (LN paper's rerun)": "oe_rerun",
              "OE + LN": "oe_ln"},
             {1: "ln.table2.{row}.caption_r1", 2: "ln.table2.{row}.caption_r5", 3: "ln.table2.{row}.caption_r10",
              4: "ln.table2.{row}.caption_mean_r", 5: "ln.table2.{row}.image_r1", 6: "ln.table2.{row}.image_r5",
              7: "ln.table2.{row}.image_r10", 8: "ln.table2.{row}.image_mean_r"}),
    TableMap("layer_norm", ("Method", "SICK(r)", "SICK(ρ)", "SICK(MSE)", "MR", "CR", "SUBJ", "MPQA"),
             {"Original (Kiros et al. 2015)": "original", "Ours (rerun, 1M iters)": "rerun",
              "Ours + LN (1M iters)": "ln", "Ours + LN † (about 1.7M iters, 1 month)": "ln_long"},
             {1: "ln.table3.{row}.sick_r", 2: "ln.table3.{row}.sick_rho", 3: "ln.table3.{row}.sick_mse",
              4: "ln.table3.{row}.mr", 5: "ln.table3.{row}.cr", 6: "ln.table3.{row}.subj", 7: "ln.table3.{row}.mpqa"}),
    TableMap("instance_norm", ("setting", "default"),
             {"-content_weight": "content_weight", "-style_weight": "style_weight", "-image_size": "image_size",
              "-style_size": "style_size", "-batch_size": "batch_size", "-num_iterations": "num_iterations",
              "-content_layers": "content_layers", "-style_layers": "style_layers", "-tv_weight": "tv_weight",
              "-learning_rate": "learning_rate", "-model": "model", "-normalization": "normalization",
              "-vgg_no_pad": "vgg_no_pad"},
             {1: "settings:code.{row}"}),
    TableMap("group_norm", ("", "BN", "LN", "IN", "GN"), {"val error": "", "Δ vs BN": "_minus_bn"},
             {1: "gn.table1.bn{row}", 2: "gn.table1.ln{row}", 3: "gn.table1.in{row}", 4: "gn.table1.gn{row}"}),
    TableMap("group_norm", ("images/GPU", "32", "16", "8", "4", "2"),
             {"BN": "bn", "GN": "gn", "GN − BN": "gn_minus_bn"},
             {1: "gn.table2.{row}.32", 2: "gn.table2.{row}.16", 3: "gn.table2.{row}.8", 4: "gn.table2.{row}.4",
              5: "gn.table2.{row}.2"}),
    TableMap("group_norm", ("# groups G", "64", "32", "16", "8", "4", "2", "1 (=LN)"), {"error": "groups"}, _GN3),
    TableMap("group_norm", ("channels/group", "64", "32", "16", "8", "4", "2", "1 (=IN)"),
             {"error": "channels_per_group"}, _GN3),
    TableMap("group_norm", ("", "AP^bbox", "AP^mask"), {"BN*": "bn_frozen", "GN": "gn"},
             {1: "gn.table4.{row}.box_ap", 2: "gn.table4.{row}.mask_ap"}),
    TableMap("group_norm", ("backbone", "box head", "AP^bbox", "AP^mask"),
             {"BN* | –": "bn_frozen", "BN* | GN": "bn_frozen_gn_head", "GN | GN": "gn_gn_head"},
             {2: "gn.table5.{row}.box_ap", 3: "gn.table5.{row}.mask_ap"}),
    TableMap("group_norm", ("case", "schedule", "im/GPU", "box AP", "mask AP"),
             {"R-50-FPN, BN*": "r50_fpn.bn_frozen.2x", "R-50-FPN, GN": "r50_fpn.gn.2x",
              'R-50-FPN, GN ("long")': "r50_fpn.gn.3x", "R-101-FPN, BN*": "r101_fpn.bn_frozen.2x",
              "R-101-FPN, GN": "r101_fpn.gn.2x", 'R-101-FPN, GN ("long")': "r101_fpn.gn.3x"},
             {3: "gn.table6.{row}.box_ap", 4: "gn.table6.{row}.mask_ap"}),
    TableMap("group_norm", ("case", "box AP", "mask AP"),
             {"R-50-FPN GN scratch": "r50_fpn.gn_scratch", "R-101-FPN GN scratch": "r101_fpn.gn_scratch",
              "R-50 BN (synced, DetNet [34])": "r50_synced_bn_detnet"},
             {1: "gn.table7.{row}.box_ap", 2: "gn.table7.{row}.mask_ap"}),
    TableMap("group_norm", ("", "32 frames, 8 clips/GPU", "32 frames, 4 clips/GPU", "64 frames, 4 clips/GPU"),
             {"BN": "bn", "GN": "gn"}, _GN8, parts=("top1", "top5")),
    TableMap("weight_standardization", ("Architecture", "Method", "Top-1", "Top-5", "weights"),
             {"ResNet-50 | GN + WS": "r50", "ResNet-101 | GN + WS": "r101", "ResNeXt-50 (32x4d) | GN + WS": "x50",
              "ResNeXt-101 (32x4d) | GN + WS": "x101"},
             {2: "ws.imagenet.{row}.gn_ws.top1", 3: "ws.imagenet.{row}.gn_ws.top5"}),
    TableMap("weight_standardization", ("Task", "Backbone", "Method", "lr schd", "img/gpu", "bbox AP", "mask AP"),
             {f"{task} | {arch} | GN + WS": f"{key}.{a}"
              for task, key in (("Faster R-CNN", "faster"), ("Mask R-CNN", "mask"))
              for arch, a in (("ResNet-50", "r50"), ("ResNet-101", "r101"), ("ResNeXt-50 (32x4d)", "x50"),
                              ("ResNeXt-101 (32x4d)", "x101"))},
             {5: "ws.coco.{row}.gn_ws.box_ap", 6: "ws.coco.{row}.gn_ws.mask_ap"}),
    TableMap("weight_standardization", ("Implementation", "Norm", "Multi-Grid", "ASPP", "Image pooling", "mIoU"),
             {"DeepLabv3 paper | BN": "deeplabv3_paper.bn", "Ours | BN": "bn", "Ours | GN+WS": "gn_ws",
              "Ours | BCN+WS": "bcn_ws"},
             {5: "ws.voc.{row}.miou"}),
    TableMap("weight_standardization", ("Method", "Mean class accuracy", "Overall accuracy"),
             {"GN": "gn", "GN + WS": "gn_ws", "BN": "bn", "BN + WS": "bn_ws"},
             {1: "ws.modelnet40.{row}.mean_class_acc", 2: "ws.modelnet40.{row}.overall_acc"}),
    TableMap("normprop", ("test error % [unverified]", "NormProp", "BN", "NIN", "DSN", "Maxout"),
             {"CIFAR-10, no augmentation": "cifar10", "CIFAR-10, augmentation": "cifar10_aug",
              "CIFAR-100, no augmentation": "cifar100", "CIFAR-100, augmentation": "cifar100_aug", "SVHN": "svhn"},
             {1: "normprop.table.{row}.normprop", 2: "normprop.table.{row}.bn", 3: "normprop.table.{row}.nin",
              4: "normprop.table.{row}.dsn", 5: "normprop.table.{row}.maxout"}),
]  # fmt: skip


def _row_label(table: Table, row: list[str], first_result: int) -> str:
    return " | ".join(
        _clean(row[i]) for i in range(first_result) if i == 0 or not CONFIG_COLUMN.match(_clean(table.header[i]))
    )


def _lookup(data: dict, key: str) -> dict | None:
    if key.startswith("settings:"):
        return data["settings"].get(key.removeprefix("settings:"))
    return next((e for e in data["entries"] if e["id"] == key), None)


def cell_problems(reference_text: str) -> tuple[list[str], list[int]]:
    """Cells whose id is missing or holds another value, and tables with numbers but no TableMap."""
    found = tables(reference_text)
    mapped: set[int] = set()
    problems: list[str] = []
    for tmap in TABLE_MAPS:
        matches = [t for t in found if t.paper == tmap.paper and tuple(map(_clean, t.header)) == tmap.header]
        assert len(matches) == 1, f"{tmap.paper} table {tmap.header} found {len(matches)} times"
        table = matches[0]
        mapped.add(table.line)
        data = pub.load_published(tmap.paper)
        for row in table.rows:
            label = _row_label(table, row, min(tmap.columns))
            assert label in tmap.rows, f"line {table.line}: row {label!r} is not mapped"
            for col, template in tmap.columns.items():
                numbers = cell_numbers(row[col])
                for part, value in zip(tmap.parts, numbers or [None] * len(tmap.parts)):
                    key = template.format(row=tmap.rows[label], part=part)
                    item = _lookup(data, key)
                    where = f"line {table.line}, row {label!r}, column {table.header[col]!r}"
                    if value is None:  # a dash, or text: an entry with that id must not hold a number
                        if item is not None and not key.startswith("settings:") and item["value"] is not None:
                            problems.append(f"{key} = {item['value']} but {where} prints {row[col]!r}")
                    elif item is None:
                        problems.append(f"{where}: {value:g} has no id {key}")
                    elif not math.isclose(float(item["value"]), value, rel_tol=1e-9):
                        problems.append(f"{key} = {item['value']} but {where} prints {value:g}")
    unmapped = [t.line for t in found if t.paper is not None and table_numbers(t) and t.line not in mapped]
    return problems, unmapped


def test_every_table_cell_is_the_value_of_its_id(reference_text):
    problems, unmapped = cell_problems(reference_text)
    assert not problems, "\n".join(problems)
    assert not unmapped, f"tables at lines {unmapped} of {REFERENCE.name} have numbers but no TableMap"


def test_cell_map_detects_swapped_and_missing_values(reference_text, monkeypatch):
    original = pub.load_published

    def tampered(paper: str) -> dict:
        data = original(paper)
        if paper == "group_norm":
            entries = {e["id"]: e for e in data["entries"]}
            entries["gn.table2.bn.16"]["value"] = 24.8  # swapped with the 8 images/GPU cell
            data["entries"].remove(entries["gn.table8.gn.64f_4c.top5"])
        return data

    monkeypatch.setattr(pub, "load_published", tampered)
    problems, _ = cell_problems(reference_text)
    assert len(problems) == 2
    assert "gn.table2.bn.16 = 24.8" in problems[0] and "has no id gn.table8.gn.64f_4c.top5" in problems[1]


# Entry values that are derived from the reference wording rather than printed as such.
DERIVED = {
    "bn.text.inception_sigmoid.max_acc": "'at most 1/1000' written as 0.1 %",
}


@pytest.mark.parametrize("paper", PAPERS)
def test_every_entry_value_occurs_in_the_reference_section(paper, reference_text):
    section = sections(reference_text)[paper]
    tokens = [_to_float(t) for t in _TOKEN.findall(section)]
    stray = [
        f"{e['id']} = {e['value']}"
        for e in pub.load_published(paper)["entries"]
        if e["value"] is not None and e["id"] not in DERIVED and not _contains(tokens, abs(e["value"]))
    ]
    assert not stray, f"values not found in the {paper} section of {REFERENCE.name}: {stray}"


def test_reference_copy_is_verbatim():
    if not SHARED_REFERENCE.is_file():
        pytest.skip(f"shared reference {SHARED_REFERENCE} not present (outside the project checkout)")
    assert REFERENCE.read_bytes() == SHARED_REFERENCE.read_bytes(), (
        f"{REFERENCE} differs from {SHARED_REFERENCE}: copy it again and update the published.yaml files"
    )


SPOT_CHECKS = [
    ("group_norm", "gn.table2.bn.2", 34.7, "paper"),
    ("group_norm", "gn.table2.gn.2", 24.1, "secondary"),
    ("group_norm", "gn.table1.gn", 24.1, "paper"),
    ("group_norm", "gn.table1.bn", 23.6, "paper"),
    ("group_norm", "gn.table2.gn_minus_bn.2", -10.6, "paper"),
    ("group_norm", "gn.table6.r50_fpn.gn.3x.box_ap", 40.8, "repo"),
    ("batch_norm", "bn.fig3.bn_x30.max_acc", 74.8, "paper"),
    ("batch_norm", "bn.fig3.bn_baseline.steps_to_72_2", 13.3e6, "paper"),
    ("batch_norm", "bn.fig4.bn_inception_ensemble.top5", 4.9, "paper"),
    ("weight_standardization", "ws.imagenet.r50.gn_ws.top1", 23.72, "repo"),
    ("weight_standardization", "ws.voc.bcn_ws.miou", 78.10, "repo"),
    ("weight_standardization", "ws.coco.mask.r50.gn_ws.mask_ap", 36.51, "repo"),
    ("weight_standardization", "ws.imagenet.r50.bn_large_batch.top1", 23.6, "unverified"),
    ("layer_norm", "ln.draw.ln", 82.09, "paper"),
    ("layer_norm", "ln.table3.ln.sick_r", 0.854, "paper"),
    ("layer_norm", "ln.table2.oe_ln.caption_r1", 48.5, "secondary"),
    ("normprop", "normprop.table.cifar10.normprop", 9.11, "unverified"),
]


@pytest.mark.parametrize(("paper", "entry_id", "value", "confidence"), SPOT_CHECKS)
def test_spot_check_against_the_reference(paper, entry_id, value, confidence, reference_text):
    entry = pub.published_value(paper, entry_id)
    assert entry["value"] == pytest.approx(value)
    assert entry["confidence"] == confidence
    printed = f"{value:g}" if abs(value) < 1e6 else f"{value / 1e6:g}·10^6"
    printed = printed.replace("-", "−")
    assert re.search(rf"(?<![\d.]){re.escape(printed)}", sections(reference_text)[paper]), printed


@pytest.mark.parametrize(
    ("paper", "entry_id"),
    [("batch_norm", "bn.fig1.with_bn.test_acc"), ("layer_norm", "ln.pi_mnist.batch4"),
     ("instance_norm", "in.quantitative"), ("group_norm", "gn.table4.ap50_ap75"),
     ("weight_standardization", "ws.voc.gn.miou"), ("normprop", "normprop.speedup_vs_bn"),
     ("weight_standardization", "ws.something_something.tsm.gn_ws.top1")],
)  # fmt: skip
def test_known_gaps_are_null_with_a_note(paper, entry_id):
    entry = pub.published_value(paper, entry_id)
    assert entry["value"] is None and entry["confidence"] == "not_found" and entry["note"]


def test_every_ws_paper_task_has_its_rows():
    """The WS paper verifies WS on five tasks; each has entries, one per norm row where the sources give rows."""
    ids = {e["id"] for e in pub.load_published("weight_standardization")["entries"]}
    for task in ("imagenet", "coco", "something_something", "voc", "modelnet40"):
        assert any(i.startswith(f"ws.{task}.") for i in ids), task
    for norm in ("bn", "bn_ws", "gn", "gn_ws"):
        assert {f"ws.something_something.tsm.{norm}.top1", f"ws.something_something.tsm.{norm}.top5"} <= ids
        assert {f"ws.modelnet40.{norm}.overall_acc", f"ws.modelnet40.{norm}.mean_class_acc"} <= ids


# --------------------------------------------------------------------------------------------------
# cards
# --------------------------------------------------------------------------------------------------
REQUIRED_HEADINGS = [
    "## Citation",
    "## BibTeX",
    "## Headline numbers",
    "## Method",
    "## Experimental settings",
    "## Official code",
    "## How our reproductions differ and why",
    "### CPU-scale experiment",
    "### Full-scale scripts",
]


def _card(paper: str) -> str:
    return (pub.PAPERS_DIR / paper / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("paper", PAPERS)
def test_card_has_the_required_sections_in_order(paper):
    lines = _card(paper).splitlines()
    positions = []
    for heading in REQUIRED_HEADINGS:
        hits = [i for i, line in enumerate(lines) if line.strip() == heading]
        assert hits, f"papers/{paper}/README.md lacks the section {heading!r}"
        positions.append(hits[0])
    assert positions == sorted(positions), f"papers/{paper}/README.md: sections out of order"


@pytest.mark.parametrize("paper", PAPERS)
def test_card_citation_bibtex_and_equations(paper):
    card = _card(paper)
    data = pub.load_published(paper)
    bibtex = re.findall(r"```bibtex\n(.*?)```", card, flags=re.S)
    assert bibtex and all(re.match(r"@\w+\{\w+,", b) for b in bibtex)
    assert data["arxiv"] in bibtex[0], "the first BibTeX entry must carry the paper's arXiv id"
    assert data["arxiv"] in card.split("## BibTeX")[0], "the citation must give the arXiv id"
    method = card.split("## Method")[1].split("## Experimental settings")[0]
    assert method.count("$$") >= 2, "the method needs display equations"
    assert re.search(r"§|\bsection\b|\babstract\b", method), "the equations must be tied to the paper's sections"


@pytest.mark.parametrize("paper", PAPERS)
def test_card_ids_exist_and_headline_values_match(paper):
    card = _card(paper)
    data = pub.load_published(paper)
    entries = {e["id"]: e for e in data["entries"]}
    mentioned = set(re.findall(rf"`({re.escape(data['id_prefix'])}\.[a-z0-9_.]+[a-z0-9_])`", card))
    assert mentioned, f"papers/{paper}/README.md names no entry id"
    unknown = sorted(i for i in mentioned if i not in entries and i not in data["settings"])
    assert not unknown, f"papers/{paper}/README.md names unknown ids {unknown}"
    prefix = re.escape(data["id_prefix"])
    rows = re.findall(rf"^\| `({prefix}\.[^`]+)` \| ([^|]+) \| ([^|]+) \|", card, flags=re.M)
    assert rows, "the headline table is missing"
    for entry_id, shown, tag in rows:
        entry = entries[entry_id]
        expected = None if shown.strip() == "null" else float(shown)
        assert entry["value"] == (None if expected is None else pytest.approx(expected)), entry_id
        assert entry["confidence"] == tag.strip(), entry_id


@pytest.mark.parametrize("paper", PAPERS)
def test_card_names_existing_normcore_classes(paper):
    import normcore

    names = set(re.findall(r"`normcore\.([A-Z]\w+)", _card(paper)))
    assert names, "the card must say which normcore class implements the method"
    missing = sorted(n for n in names if not hasattr(normcore, n))
    assert not missing, f"papers/{paper}/README.md names normcore classes that do not exist: {missing}"


# --------------------------------------------------------------------------------------------------
# the lookup API and its command line
# --------------------------------------------------------------------------------------------------
def test_published_value_error_lists_close_ids():
    with pytest.raises(KeyError, match=r"gn\.table2\.bn\.32"):
        pub.published_value("group_norm", "gn.table2.bn.3")


def test_unknown_paper_error_lists_papers():
    with pytest.raises(FileNotFoundError, match="available: batch_norm, group_norm"):
        pub.load_published("groupnorm")
    with pytest.raises(FileNotFoundError):
        pub.published_value("groupnorm", "gn.table2.bn.2")


def test_published_setting_and_copies():
    assert pub.published_setting("batch_norm", "mnist.batch_size")["value"] == 60
    with pytest.raises(KeyError, match=r"mnist\.batch_size"):
        pub.published_setting("batch_norm", "mnist.batchsize")
    entry = pub.published_value("group_norm", "gn.table2.bn.2")
    entry["value"] = 0.0
    pub.load_published("group_norm")["entries"].clear()
    assert pub.published_value("group_norm", "gn.table2.bn.2")["value"] == 34.7


def test_command_line(capsys):
    assert pub.main(["group_norm", "gn.table2.bn.2"]) == 0
    assert "34.7" in capsys.readouterr().out
    assert pub.main(["--check"]) == 0
    assert capsys.readouterr().out.count("valid") == len(PAPERS)
    assert pub.main(["group_norm", "gn.nope"]) == 2
    assert "no entry" in capsys.readouterr().err


CONFIGS = sorted(REPO_ROOT.glob("reproductions/*/configs/*.yaml"))


@pytest.mark.skipif(not CONFIGS, reason="no full-scale configs yet")
def test_reproduction_configs_cite_existing_entries():
    """Every full-scale config that names a published number (``published: {id, value, tag}``) names
    an existing entry, with its value and confidence tag."""
    checked, problems = 0, []
    for path in CONFIGS:
        cited = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("published")
        if not isinstance(cited, dict) or "id" not in cited:
            continue
        checked += 1
        where = path.relative_to(REPO_ROOT)
        try:
            entry = pub.published_value(path.parts[-3], cited["id"])
        except KeyError as err:
            problems.append(f"{where}: {err.args[0]}")
            continue
        if "value" in cited and cited["value"] != (None if entry["value"] is None else pytest.approx(entry["value"])):
            problems.append(f"{where}: value {cited['value']} but {cited['id']} = {entry['value']}")
        if "tag" in cited and cited["tag"] != entry["confidence"]:
            problems.append(f"{where}: tag {cited['tag']} but {cited['id']} is {entry['confidence']}")
    assert checked, "no config names a published entry"
    assert not problems, "\n".join(problems)


def test_papers_readme_documents_the_folders():
    index = (pub.PAPERS_DIR / "README.md").read_text(encoding="utf-8")
    for paper in PAPERS:
        assert f"]({paper}/README.md)" in index
    assert Path(pub.PAPERS_DIR / "schema.json").is_file()
