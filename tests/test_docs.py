"""README.md and BENCHMARKS.md say only what their committed records say.

Every measured number sits in a generated block that scripts/docs.py renders from records kept in
git; the check fails when a block and its records disagree, and typed prose holds no measurement.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import yaml

from conftest import REPO

spec = importlib.util.spec_from_file_location("docs", REPO / "scripts" / "docs.py")
docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs)


def test_every_generated_block_equals_what_its_records_render(capsys) -> None:
    assert docs.main(["--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", docs.DOCS)
def test_one_edited_digit_in_a_generated_block_fails_the_check(name: str) -> None:
    text = (REPO / name).read_text()
    blocks = list(docs.BLOCK.finditer(text))
    assert blocks, f"{name} has no generated blocks"
    for block in blocks:
        digit = re.search(r"\d", block["body"])
        if digit is None:
            continue
        at = block.start("body") + digit.start()
        edited = text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:]
        assert docs.regenerate(edited)[1] == [block["name"]]
    assert docs.regenerate(text)[1] == []


@pytest.mark.parametrize("name", docs.DOCS)
def test_typed_prose_holds_no_measurement(name: str) -> None:
    """Outside generated blocks and code, no decimal number and no percentage: those are measurements."""
    prose = re.sub(r"Sec\. [\d.]+", "", docs.outside_blocks((REPO / name).read_text()))  # a paper's sections
    found = re.findall(r"[-+]?\d+\.\d+|\d+(?:\.\d+)?\s?%", prose)
    assert found == [], f"{name}: typed numbers {found[:10]}; generate them from a record (scripts/docs.py)"


def test_every_renderer_has_a_block_and_every_block_a_renderer() -> None:
    names = {m["name"] for doc in docs.DOCS for m in docs.BLOCK.finditer((REPO / doc).read_text())}
    assert names == set(docs.RENDERERS)


def test_the_default_tables_gain_the_supervised_row_when_the_records_have_it(tmp_path, monkeypatch) -> None:
    for name in ("results/evaluate/metrics.json", "results/pretrain/metrics.json", "results/config/pretrain.yaml",
                 "results/config/baseline.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO / name).read_text())
    monkeypatch.setattr(docs, "REPO", tmp_path)
    ev = json.loads((tmp_path / "results/evaluate/metrics.json").read_text())
    ev = {k: v for k, v in ev.items() if "supervised" not in k}  # records as a run without the row writes them
    (tmp_path / "results/evaluate/metrics.json").write_text(json.dumps(ev))
    before = docs.default_images()
    assert "supervised" not in before + docs.default_details()
    ev.update(supervised_top1=0.85, supervised_linear_top1=0.8, supervised_knn_top1=0.75,
              linear_fraction_of_supervised=ev["linear_top1"] / 0.85)
    (tmp_path / "results/evaluate/metrics.json").write_text(json.dumps(ev))
    base = yaml.safe_load((tmp_path / "results/config/baseline.yaml").read_text())
    base.update(epochs=80, eval={**base["eval"], "supervised": {"enabled": True, "epochs": 30}})
    (tmp_path / "results/config/baseline.yaml").write_text(yaml.safe_dump(base))
    row = "| supervised small CNN (same architecture, every train label, 30 epochs; its own classifier "
    assert docs.default_images() == before + "\n" + row + "85.0%) | 80.0% | 75.0% |"
    details = docs.default_details()
    assert row + "**85.0%**) | 80.0% | 75.0% |" in details
    assert f"recovers {100 * ev['linear_top1'] / 0.85:.1f}% of the supervised model's top-1" in details


def test_a_lever_is_measured_only_against_a_supervised_run_of_its_own_views(tmp_path, monkeypatch) -> None:
    records = tmp_path / "records"
    for folder in ("methods", "methods-plain"):
        (records / folder).mkdir(parents=True)
        for name in ("simclr", "supervised"):
            (records / folder / f"{name}.json").write_text((docs.RECORDS / folder / f"{name}.json").read_text())
    lever = json.loads((records / "methods" / "simclr.json").read_text())
    lever["config"]["views"]["size"] = 24
    (records / "ratio-levers" / "views-24").mkdir(parents=True)
    (records / "ratio-levers" / "views-24" / "simclr.json").write_text(json.dumps(lever))
    monkeypatch.setattr(docs, "RECORDS", records)
    with pytest.raises(SystemExit, match="no supervised record with the backbone, views and budget"):
        docs.ratio_levers()
    sup = json.loads((records / "methods" / "supervised.json").read_text())
    sup["config"]["views"]["size"] = 24
    sup["classifier_top1"] = 0.8
    (records / "ratio-levers" / "views-24" / "supervised.json").write_text(json.dumps(sup))
    row = docs.ratio_levers().splitlines()[-1]
    assert row.startswith("| `views.size` 16 → 24 |")
    assert f"| {lever['linear_top1'] / 0.8:.3f} |" in row
