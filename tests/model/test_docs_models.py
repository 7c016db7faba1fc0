"""docs/models.md is generated from the registry and the models' YAML ``results`` (``recstudio docs``)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recstudio.model.registry import MODELS, list_models, model_yaml
from recstudio.reporting.cards import plot_cards, render_all
from recstudio.reporting.model_table import check_results, render_models_md, result_lines
from recstudio.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_docs_models_md_is_not_stale():
    text = (ROOT / "docs" / "models.md").read_text()
    assert text == render_models_md(), "docs/models.md is stale: run `python -m recstudio docs` and commit it"


def test_every_registered_model_is_in_the_model_list():
    text = render_models_md()
    missing = [m["name"] for m in list_models() if f"| {m['name']} |" not in text]
    assert not missing


def test_every_results_section_is_well_formed():
    for m in list_models():
        check_results(m["name"], model_yaml(MODELS.get(m["name"]))["results"])


def test_results_are_rendered_with_reference_and_protocol():
    lines = result_lines("X", {"ml-100k": {"protocol": "8:1:1", "test": {"ndcg@10": 0.25}, "spread": {"ndcg@10": 0.001},
                                           "reference": {"source": "RecBole", "ndcg@10": 0.2116},
                                           "seeds": [1, 2], "epoch_seconds": 1.5}})
    assert lines == ["  - **ml-100k**: ndcg@10 0.2500 ± 0.0010 — reference RecBole: ndcg@10 0.2116 "
                     "(seeds 1, 2; 1.5 s/epoch). Protocol: 8:1:1"]
    with pytest.raises(ConfigError, match="unknown keys"):
        check_results("X", {"d": {"test": {}, "ndcg": 1}})
    with pytest.raises(ConfigError, match="needs a 'test'"):
        check_results("X", {"d": {"protocol": "p"}})


def test_the_docs_command_checks_and_writes(tmp_path):
    out = tmp_path / "models.md"
    cards = tmp_path / "cards"
    write_measurement(cards, "BPR", "ml-100k")
    cmd = [sys.executable, "-m", "recstudio", "docs", "--output", str(out), "--cards-dir", str(cards)]
    assert subprocess.run(cmd + ["--check"], capture_output=True, text=True).returncode == 1
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    r = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert r.returncode == 0 and "up to date" in r.stdout
    assert "| [BPR](BPR.md) | ml-100k | 2 | 0.2800 ± 0.0020 | 0.2900 ± 0.0000 | 0.966 |" in (cards / "README.md").read_text()
    (cards / "BPR.md").write_text("edited by hand")
    assert subprocess.run(cmd + ["--check"], capture_output=True, text=True).returncode == 1


def aggregate(ndcg, spread, seconds):
    return {"runs": [{}, {}], "mean": {"ndcg@10": ndcg, "recall@10": ndcg - 0.05}, "spread": {"ndcg@10": spread,
            "recall@10": spread}, "seconds": seconds, "epoch_seconds": seconds / 50, "epochs": 50, "peak_mb": 500.0}


def write_measurement(cards, model, dataset):
    m = {"model": model, "dataset": dataset, "protocol": "per-user random 8:1:1", "seeds": [1, 2], "threads": 1,
         "commit": "abc1234", "date": "2026-12-02", "note": "a note", "ours": aggregate(0.28, 0.002, 20.0),
         "ours_overrides": {"embed_dim": 64}, "recbole_model": model, "recbole": aggregate(0.29, 0.0, 40.0),
         "recbole_overrides": {}, "ratio": {"ndcg@10": 0.28 / 0.29, "recall@10": 0.23 / 0.24}}
    (cards / model).mkdir(parents=True, exist_ok=True)
    (cards / model / f"{dataset}.json").write_text(json.dumps(m))


def test_a_card_shows_both_libraries_the_ratio_and_the_cost(tmp_path):
    write_measurement(tmp_path, "BPR", "ml-100k")
    files = render_all(tmp_path)
    card = files[tmp_path / "BPR.md"]
    assert "Paper: S. Rendle" in card and "Protocol: per-user random 8:1:1." in card
    assert "| RecStudio | 0.2800 ± 0.0020 | 0.2300 ± 0.0020 | - | - | - | 50 | 0.40 | 20 | 500 |" in card
    assert "| RecBole 1.2.1 (BPR) | 0.2900 ± 0.0000 |" in card and "| ratio | 0.966 | 0.958 |" in card
    assert "RecStudio overrides: `embed_dim=64`." in card and "Note: a note" in card
    assert [p.name for p in plot_cards(tmp_path, "ml-100k")] == ["ndcg_by_model-ml-100k.png",
                                                                  "quality_vs_time-ml-100k.png"]
    assert plot_cards(tmp_path, "ml-1m") == []


def test_a_card_names_its_reference_library(tmp_path):
    """A measurement against RecBole-GNN (``recbole_library``) says so in the card and in docs/models.md."""
    from recstudio.reporting.cards import card_summary
    from recstudio.reporting.model_table import card_lines
    write_measurement(tmp_path, "SimGCL", "ml-100k")
    path = tmp_path / "SimGCL" / "ml-100k.json"
    m = json.loads(path.read_text())
    m["recbole_library"] = "RecBole-GNN 632ef88 on RecBole 1.2.1"
    path.write_text(json.dumps(m))
    card = render_all(tmp_path)[tmp_path / "SimGCL.md"]
    assert "| RecBole-GNN 632ef88 on RecBole 1.2.1 (SimGCL) | 0.2900 ± 0.0000 |" in card
    assert "RecBole-GNN 632ef88 on RecBole 1.2.1 overrides: defaults." in card and "| RecBole 1.2.1 (" not in card
    assert card_summary("SimGCL", tmp_path)["ml-100k"]["library"] == "RecBole-GNN 632ef88 on RecBole 1.2.1"
    assert "vs RecBole-GNN 632ef88 on RecBole 1.2.1 0.2900" in card_lines("SimGCL", tmp_path)[0]


def test_a_card_can_stand_against_a_published_number(tmp_path):
    """An ours-only measurement with ``published`` (the ml-1m sequential cards) shows the source, the numbers and
    the ratio, in the card, the index and docs/models.md; one with no reference says it is ours only."""
    from recstudio.reporting.cards import card_summary, render_index, load_measurements
    from recstudio.reporting.model_table import card_lines
    write_measurement(tmp_path, "SASRec", "ml-1m-seq")
    path = tmp_path / "SASRec" / "ml-1m-seq.json"
    m = json.loads(path.read_text())
    for key in ("recbole", "recbole_model", "recbole_overrides"):
        m.pop(key)
    m["published"] = {"source": "RecTools", "mean": {"ndcg@10": 0.1779, "hit@10": 0.3058}}
    m["ratio"] = {"ndcg@10": 0.28 / 0.1779}
    path.write_text(json.dumps(m))
    card = render_all(tmp_path)[tmp_path / "SASRec.md"]
    assert "| published (RecTools) | 0.1779 | - | - | 0.3058 | - | | | | |" in card
    assert f"| ratio | {0.28 / 0.1779:.3f} |" in card and "a published number" in card
    assert "0.1779 (published)" in render_index(load_measurements(tmp_path))
    assert card_summary("SASRec", tmp_path)["ml-1m-seq"]["library"] == "published (RecTools)"
    assert "vs published (RecTools) 0.1779 (ratio 1.574)" in card_lines("SASRec", tmp_path)[0]
    m.pop("published")
    m.pop("ratio")
    path.write_text(json.dumps(m))
    assert "ours only" in render_all(tmp_path)[tmp_path / "SASRec.md"]
    assert "(ours only: no reference side measured)" in card_lines("SASRec", tmp_path)[0]


def test_the_cards_in_docs_are_not_stale():
    for path, text in render_all().items():
        assert path.is_file() and path.read_text() == text, f"{path} is stale: run `python -m recstudio docs`"
