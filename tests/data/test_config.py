import pytest

from recstudio.data.config import DATA_OPTIONS, preprocess_config, resolve_data_config
from recstudio.utils.errors import ConfigError


def test_defaults_and_layers():
    cfg = resolve_data_config({"min_user_inter": 5}, {"min_user_inter": 10, "seed": 1})
    assert cfg["min_user_inter"] == 10 and cfg["seed"] == 1 and cfg["split_mode"] == "user_entry"
    assert set(cfg) == set(DATA_OPTIONS)


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match="unknown key 'min_user_inters'.*'min_user_inter'"):
        resolve_data_config({"min_user_inters": 5})


@pytest.mark.parametrize("key,value,msg", [
    ("min_user_inter", "5", "expects int"),
    ("binarize", 1, "expects bool"),
    ("rating_threshold", True, "expects a number"),
    ("split_mode", "users", "must be one of.*Did you mean 'user'"),
    ("split_ratio", [0.5, 0.1, 0.1], "summing to 1"),
    ("fold_in_ratio", 1.5, r"\(0, 1\)"),
    ("float_scaling", {"price": "zscore"}, "'standard', 'minmax' or 'log'"),
    ("discretize", {"age": 1}, ">= 2"),
    ("user_field", None, "may not be null"),
])
def test_bad_values(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        resolve_data_config({key: value})


def test_whole_floats_accepted_for_ints():
    assert resolve_data_config({"min_item_inter": 5.0})["min_item_inter"] == 5


def test_split_keys_do_not_enter_preprocess_config():
    a = preprocess_config(resolve_data_config({"seed": 1, "split_mode": "loo"}))
    b = preprocess_config(resolve_data_config({"seed": 2}))
    assert a == b
    assert preprocess_config(resolve_data_config({"min_user_inter": 3})) != b
