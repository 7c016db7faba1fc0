"""The zoo is discovered: every module under recstudio/model/zoo registers exactly the models it defines,
and each has a YAML with a search space (unless it has no keys of its own); a new model needs no other file."""
import importlib
import inspect
import textwrap

import pytest

from recstudio.model import zoo
from recstudio.model.registry import MODELS, list_models, model_yaml


@pytest.mark.parametrize("module", zoo.zoo_modules())
def test_every_zoo_module_registers_a_model(module):
    mod = importlib.import_module(module)
    mine = [n for n in MODELS.names() if inspect.getmodule(MODELS.get(n)) is mod]
    assert mine, f"{module} registers no model: decorate its class with @register_model or move it out of the zoo"
    for name in mine:
        doc = model_yaml(MODELS.get(name))
        if doc["model"]:  # a model with keys of its own can be tuned (Pop and Random have none)
            assert doc["search_space"], f"{name} has no search_space in its YAML"


def test_discovery_lists_every_model_once():
    names = [m["name"] for m in list_models()]
    assert len(names) == len(set(names)) and {"BPR", "SASRec", "EASE"} <= set(names)


def test_a_copy_of_bpr_in_a_new_file_registers_trains_and_loads(tmp_path, make_split):
    """The 'one .py plus its YAML' promise: a BPR copy under a new name, no other file touched."""
    import recstudio
    from pathlib import Path
    folder = Path(zoo.__file__).parent / "general"
    src = (folder / "bpr.py").read_text().replace('@register_model("BPR"', '@register_model("BPRCopyForTest"')
    src = src.replace("class BPR(", "class BPRCopyForTest(")
    py, yml = folder / "bpr_copy_for_test.py", folder / "bpr_copy_for_test.yaml"
    py.write_text(src)
    yml.write_text((folder / "bpr.yaml").read_text())
    try:
        mod = importlib.import_module("recstudio.model.zoo.general.bpr_copy_for_test")
        assert "recstudio.model.zoo.general.bpr_copy_for_test" in zoo.zoo_modules()
        cls = recstudio.get_model("bprcopyfortest")
        model = cls(epochs=1, embed_dim=8, quiet=True)
        metrics = model.fit(make_split(0, n_users=20, n_items=25, length=6), run_dir=tmp_path)
        assert metrics
        again = recstudio.load(model.save(tmp_path / "m.pt"))
        assert type(again).__name__ == "BPRCopyForTest"
        from recstudio.tune import check_search_space, model_search_space
        check_search_space(cls, model_search_space("BPRCopyForTest"))
    finally:
        py.unlink()
        yml.unlink()
        name = "BPRCopyForTest"
        MODELS._items.pop(name, None)
        MODELS._names.pop(name.lower(), None)
        MODELS.info.pop(name, None)
        import sys
        sys.modules.pop("recstudio.model.zoo.general.bpr_copy_for_test", None)
