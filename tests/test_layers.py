"""Imports point downward only (docs/architecture.md): every import of every module, function-level ones
included, is checked against the layer rules, so a cycle or an upward dependency fails here first."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "recstudio"

#: (modules under this path, module prefixes they must never import)
RULES = [
    ("data", ("recstudio.model", "recstudio.train", "recstudio.tune", "recstudio.eval", "recstudio.serving")),
    ("eval", ("recstudio.model", "recstudio.train", "recstudio.tune")),
    ("utils", ("recstudio.model", "recstudio.train", "recstudio.tune", "recstudio.data", "recstudio.eval")),
    ("ann", ("recstudio.model", "recstudio.train", "recstudio.tune")),
    ("model/module", ("recstudio.model.base", "recstudio.model.family", "recstudio.model.zoo",
                      "recstudio.model.registry", "recstudio.train", "recstudio.tune")),
    ("model/loss", ("recstudio.model.base", "recstudio.model.family", "recstudio.model.zoo",
                    "recstudio.model.registry", "recstudio.train", "recstudio.tune")),
    ("model/scorer", ("recstudio.model.base", "recstudio.model.family", "recstudio.model.zoo",
                      "recstudio.model.registry", "recstudio.train", "recstudio.tune")),
    ("model/sampler", ("recstudio.model.base", "recstudio.model.family", "recstudio.model.zoo",
                       "recstudio.model.registry", "recstudio.train", "recstudio.tune")),
    ("model/base", ("recstudio.model.family", "recstudio.model.zoo", "recstudio.model.registry",
                    "recstudio.tune", "recstudio.train")),
    ("model/family", ("recstudio.model.zoo", "recstudio.train", "recstudio.tune")),
    ("train", ("recstudio.tune", "recstudio.serving", "recstudio.commands")),
]
#: the one upward call allowed, each with its reason: ``Recommender.fit`` is a convenience that hands the
#: model to the training engine (``recstudio.train.fit_model``), imported when called
ALLOWED = {("model/base/recommender.py", "recstudio.train.trainer")}


def imports_of(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("layer,forbidden", RULES, ids=[r[0] for r in RULES])
def test_imports_point_downward(layer, forbidden):
    bad = []
    for path in sorted((PKG / layer).rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for mod in imports_of(path):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden) and (rel, mod) not in ALLOWED:
                bad.append(f"{rel} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_training_engine_is_not_inside_model_base():
    assert not [p.name for p in (PKG / "model" / "base").glob("*.py")
                if p.stem in ("trainer", "checkpoint", "resume_callbacks", "distributed")]
    assert (PKG / "train" / "trainer.py").is_file()
