"""Choice options are case-insensitive (and accept torch's scheduler class names); the resolved
config holds the canonical lower-case value, from the command line and from Python."""
import pytest
import yaml

import recstudio
from recstudio.commands import serve, train
from recstudio.model.base.config import resolve_config
from recstudio.model.registry import get_model
from recstudio.utils.errors import ConfigError
from recstudio.utils.options import Option, canonical_choice

try:
    from test_folder_datasets import FAST, write_folder
except ImportError:  # tests/ laid out as a package
    from tests.data.test_folder_datasets import FAST, write_folder

SPELLINGS = {"ann": [("IVF", "ivf"), ("Hnsw", "hnsw"), ("FLAT", "flat")],
             "optimizer": [("Adam", "adam"), ("SGD", "sgd"), ("RMSprop", "rmsprop"), ("SparseAdam", "sparse_adam")],
             "scheduler": [("StepLR", "step"), ("ExponentialLR", "exponential"), ("CosineAnnealingLR", "cosine"),
                           ("ReduceLROnPlateau", "plateau"), ("STEP", "step"), ("Plateau", "plateau")],
             "eval_protocol": [("Sampled", "sampled")], "split_mode": [("LOO", "loo")]}


@pytest.mark.parametrize("key, given, canonical", [(k, g, c) for k, pairs in SPELLINGS.items() for g, c in pairs])
def test_python_kwargs_resolve_to_the_canonical_value(key, given, canonical):
    assert resolve_config(get_model("BPR"), overrides={key: given})[key] == canonical


def test_unknown_choices_still_fail_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"'scheduler' must be one of \[.*'plateau'.*\] \(any case\), "
                                          r"got 'StepL'. Did you mean 'step'"):
        resolve_config(get_model("BPR"), overrides={"scheduler": "StepL"})
    assert canonical_choice("LambdaLR", ("step",)) == "LambdaLR"        # no alias: left for the error
    assert canonical_choice(3, ("step",)) == 3


def test_option_canonical_hook_normalises_names():
    opt = Option("bpr", (str,), "loss", nullable=True, canonical=str.lower)
    assert opt.check("loss", "BPR") == "bpr" and opt.check("loss", None) is None


def test_command_line_choices_are_stored_canonical(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)
    code = train.main(["-d", "mydata", "--data_dir", "dataset", "--run_dir", "runs", *FAST, "--optimizer", "Adam",
                       "--scheduler", "StepLR", "--loss", "BPR", "--split_mode", "User_Entry"])
    assert code == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["optimizer"], saved["scheduler"], saved["split_mode"]) == ("adam", "step", "user_entry")
    assert saved["loss"].lower() == "bpr"
    model = recstudio.load(run)
    assert model.config["scheduler"] == "step"
    args = serve.build_parser().parse_args(["--checkpoint", str(run), "--ann", "IVF", "--log-level", "INFO"])
    assert (args.ann, args.log_level) == ("ivf", "info")


@pytest.mark.parametrize("text, value", [("1e-5", 1e-05), ("2E-3", 0.002), ("-1e2", -100.0), ("+3e0", 3.0),
                                         ("1E5", 100000.0)])
def test_exponent_numbers_that_yaml_reads_as_text_are_numbers(text, value):
    """PyYAML (YAML 1.1) reads ``1e-5`` (no decimal point) as a string: from the command line, a YAML config
    file or Python, a number key takes it as the number; a text key keeps the text."""
    assert yaml.safe_load(text) == text  # the YAML behaviour this guards against
    cfg = resolve_config(get_model("BPR"), overrides={"weight_decay": text, "learning_rate": text})
    assert cfg["weight_decay"] == value and isinstance(cfg["weight_decay"], float) and cfg["learning_rate"] == value
    assert Option(64, (int,), "size").check("embed_dim", "1e2") == 100
    assert Option("x", (str,), "a name").check("name", text) == text
    with pytest.raises(ConfigError, match="expects int"):
        Option(64, (int,), "size").check("embed_dim", "1e-2")
    with pytest.raises(ConfigError, match="expects int or float"):
        Option(0.1, (int, float), "rate").check("learning_rate", "1e-3x")


def test_exponent_numbers_on_the_command_line_and_in_a_config_file(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path / "dataset")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("train:\n  learning_rate: 2e-3\n")
    code = train.main(["-d", "mydata", "--data_dir", "dataset", "--run_dir", "runs", *FAST, "--config", "c.yaml",
                       "--weight_decay", "1e-5"])
    assert code == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["learning_rate"], saved["weight_decay"]) == (0.002, 1e-05)
