"""docs/models.md is generated from the registry and the models' YAML ``results`` (``recstudio docs``)."""
import subprocess
import sys
from pathlib import Path

import pytest

from recstudio.model.registry import MODELS, list_models, model_yaml
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
    cmd = [sys.executable, "-m", "recstudio", "docs", "--output", str(out)]
    assert subprocess.run(cmd + ["--check"], capture_output=True, text=True).returncode == 1
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    r = subprocess.run(cmd + ["--check"], capture_output=True, text=True)
    assert r.returncode == 0 and "up to date" in r.stdout
