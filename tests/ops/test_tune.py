"""NNI tuning (docs/tuning.md): parameter mapping, search spaces, --mode tune, tune.sh, a real experiment.

The experiment test starts a real NNI manager on a free loopback port, with HOME and the experiment
folder under tmp_path (nothing goes to ~/nni-experiments), and stops it in a `finally`.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

import recstudio
from recstudio.model.registry import get_model, list_models, model_yaml
from recstudio.tune import check_search_space, load_search_space, map_parameters, model_search_space
from recstudio.tune.experiment import prepare, trial_model
from recstudio.utils.errors import ConfigError
from loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
NNI_VARS = ("NNI_PLATFORM", "NNI_EXP_ID", "NNI_TRIAL_JOB_ID", "NNI_SYS_DIR", "NNI_OUTPUT_DIR",
            "NNI_TRIAL_COMMAND_CHANNEL", "NNI_TRIAL_SEQ_ID")
FINAL_STATES = {"SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"}


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in NNI_VARS}
    env.update(extra)
    return env


@pytest.fixture
def no_nni_env(monkeypatch):
    for var in NNI_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def tiny_split(make_split):
    return make_split(2, n_users=30, n_items=40, length=10)


# ---- search spaces and parameter mapping -----------------------------------------------------
@pytest.mark.parametrize("name", [m["name"] for m in list_models()])
def test_every_registered_model_has_a_search_space_of_its_own_keys(name):
    if not model_yaml(get_model(name))["model"]:  # Pop, Random: nothing of their own to tune
        with pytest.raises(ConfigError, match="no hyperparameters of its own"):
            model_search_space(name)
        return
    space = model_search_space(name)
    check_search_space(get_model(name), space, where=name)  # every key a config key, every choice valid
    assert space


def test_parameters_map_onto_flat_config_keys():
    bpr = get_model("BPR")
    params = {"train.learning_rate": 0.01, "model.embed_dim": 32.0, "weight_decay": 0, "data.seed": 3}
    assert map_parameters(bpr, params) == {"learning_rate": 0.01, "embed_dim": 32, "weight_decay": 0.0, "seed": 3}
    assert map_parameters(bpr, {"model.embed_dim": np.int64(16)}) == {"embed_dim": 16}
    assert isinstance(map_parameters(bpr, {"model.embed_dim": np.int64(16)})["embed_dim"], int)


@pytest.mark.parametrize("params, message", [
    ({"learning_rat": 0.1}, r"unknown config key 'learning_rat'.*Did you mean 'learning_rate'"),
    ({"model.embed_dimm": 8}, r"unknown config key 'model.embed_dimm'.*Did you mean 'embed_dim'"),
    ({"model.learning_rate": 0.1}, r"'learning_rate' is a train key of BPR.*train.learning_rate"),
    ({"trian.learning_rate": 0.1}, r"unknown section 'trian'.*Did you mean 'train'"),
    ({"mode": "light"}, r"a tuning trial sets 'mode' itself"),
    ({"learning_rate": 0.1, "train.learning_rate": 0.2}, r"set 'learning_rate' twice"),
    ({"model.embed_dim": "big"}, r"'embed_dim' expects int"),
])
def test_bad_trial_parameters_are_clear_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        map_parameters(get_model("BPR"), params)


@pytest.mark.parametrize("space, message", [
    ({"model.n_layers": {"_type": "uniform", "_value": [1, 3]}}, r"'n_layers' is an integer"),
    ({"model.dropout": {"_type": "choice", "_value": [0.1, "high"]}}, r"'dropout' expects"),
    ({"model.norm_first": {"_type": "uniform", "_value": [0, 1]}}, r"not a number; tune it with _type choice"),
    ({"model.dropout": {"_type": "mutable_layer", "_value": [0]}}, r"_type 'mutable_layer' is not one"),
    ({"model.dropot": {"_type": "uniform", "_value": [0, 1]}}, r"Did you mean 'dropout'"),
])
def test_bad_search_spaces_are_clear_errors(space, message):
    with pytest.raises(ConfigError, match=message):
        check_search_space(get_model("SASRec"), space)


# ---- the experiment config and tune.sh ---------------------------------------------------------
def test_config_yaml_tunes_bpr_with_its_search_space():
    doc = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert trial_model(doc["trialCommand"]) == "BPR" and "--mode tune" in doc["trialCommand"]
    assert doc["searchSpace"] == model_search_space("BPR")
    assert doc["trainingService"]["platform"] == "local" and doc["tuner"]["classArgs"]["optimize_mode"] == "maximize"
    assert prepare(ROOT / "config.yaml") == ROOT / "config.yaml"  # passes its own checks


def test_prepare_retargets_the_config_to_another_model(tmp_path):
    out = prepare(ROOT / "config.yaml", "mf", tmp_path / "mf.yaml")
    doc = yaml.safe_load(out.read_text())
    assert trial_model(doc["trialCommand"]) == "MF" and "--mode tune" in doc["trialCommand"]
    assert doc["searchSpace"] == model_search_space("MF") and "searchSpaceFile" not in doc
    assert doc["tuner"]["classArgs"]["optimize_mode"] == "minimize"  # MF early-stops on rmse
    assert doc["trialCodeDirectory"] == str(ROOT) and doc["experimentName"] == "recstudio-MF-ml-100k"


def test_prepare_refuses_configs_that_would_waste_an_experiment(tmp_path):
    base = yaml.safe_load((ROOT / "config.yaml").read_text())

    def write(**changes):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**base, **changes}))
        return path

    with pytest.raises(ConfigError, match="must run --mode tune"):
        prepare(write(trialCommand="python run.py -m BPR"))
    with pytest.raises(ConfigError, match="should be maximized; set optimize_mode: maximize"):
        prepare(write(tuner={"name": "TPE", "classArgs": {"optimize_mode": "minimize"}}))
    with pytest.raises(ConfigError, match="'embed_dimm' in the searchSpace.*Did you mean 'embed_dim'"):
        prepare(write(searchSpaceFile=None, searchSpace={"embed_dimm": {"_type": "choice", "_value": [8]}}))
    with pytest.raises(ConfigError, match="does not exist"):
        prepare(tmp_path / "missing.yaml")


def test_tune_sh_checks_its_arguments_and_nnictl(tmp_path):
    def tune(*args, path=None):
        env = clean_env(PATH=path or os.environ["PATH"])
        return subprocess.run(["bash", str(ROOT / "tune.sh"), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    r = tune()
    assert r.returncode == 2 and "no experiment config given" in r.stderr and "usage" in r.stderr
    r = tune(str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml' does not exist" in r.stderr
    r = tune("config.yaml", "--port", "abc")
    assert r.returncode == 2 and "--port must be a number" in r.stderr
    bare = tmp_path / "bin"  # a PATH without nnictl
    bare.mkdir()
    r = tune("config.yaml", path=f"{bare}:/usr/bin:/bin")
    assert r.returncode == 2 and 'pip install -e ".[nni]"' in r.stderr
    r = tune("config.yaml", "-m", "BRP", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert r.returncode == 2 and "Did you mean 'BPR'" in r.stderr


# ---- --mode tune ----------------------------------------------------------------------------------
def test_tune_mode_outside_an_nni_trial_fails_fast(no_nni_env, tmp_path):
    r = subprocess.run([sys.executable, "run.py", "--mode", "tune", "--run_dir", str(tmp_path / "runs")], cwd=ROOT,
                       env=clean_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "only inside an NNI trial" in r.stderr and "bash tune.sh config.yaml" in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_nni_standalone_mode_is_not_a_trial(monkeypatch, tiny_split):
    monkeypatch.setenv("NNI_PLATFORM", "unittest")  # NNI would silently run "standalone"
    monkeypatch.delenv("NNI_TRIAL_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="only inside an NNI trial"):
        recstudio.run("BPR", tiny_split, mode="tune", epochs=1)
    with pytest.raises(ConfigError, match="no reporting callback was passed"):  # never trains unreported
        get_model("BPR")(mode="tune", epochs=1, embed_dim=8).fit(tiny_split)
    with pytest.raises(ConfigError, match="only inside an NNI trial"):
        from recstudio.tune import TrialReporter
        TrialReporter("mrr@10")


class RecordingChannel:
    """An NNI trial command channel that hands out fixed parameters and records the reported metrics."""

    def __init__(self, parameters):
        self.parameters, self.metrics = parameters, []

    def receive_parameter(self):
        return {"parameter_id": 0, "parameter_source": "algorithm", "parameters": self.parameters,
                "parameter_index": 0}

    def send_metric(self, type, parameter_id, trial_job_id, sequence, value):  # noqa: A002 (NNI's name)
        self.metrics.append((type, value))


@pytest.fixture
def fake_trial(monkeypatch, tmp_path):
    """This process as an NNI trial whose channel records what it reports."""
    pytest.importorskip("nni")
    import nni.trial
    from nni.runtime import trial_command_channel as channels
    monkeypatch.setenv("NNI_PLATFORM", "local")
    monkeypatch.setenv("NNI_TRIAL_JOB_ID", "Tst01")
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(tmp_path / "trial"))
    channel = RecordingChannel({"model.embed_dim": 16, "train.learning_rate": 0.01})
    monkeypatch.setattr(channels, "_channel", channel)
    monkeypatch.setattr(nni.trial, "_params", None)
    monkeypatch.setattr(nni.trial, "_intermediate_seq", 0)
    return channel


def test_a_trial_takes_its_parameters_and_reports_every_validation_and_the_test(fake_trial, tiny_split, tmp_path,
                                                                                 capsys):
    model, metrics = recstudio.run("BPR", tiny_split, mode="tune", epochs=3, batch_size=64)
    assert model.config["embed_dim"] == 16 and model.config["learning_rate"] == 0.01 and model.config["quiet"]
    intermediate = [v for t, v in fake_trial.metrics if t == "PERIODICAL"]
    final = [v for t, v in fake_trial.metrics if t == "FINAL"]
    assert len(intermediate) == 3 and all(isinstance(v, float) for v in intermediate)
    assert final == [{"default": metrics["mrr@10"], **metrics}]
    assert model.run_dir.parent == tmp_path / "trial"  # the run folder sits in the trial's NNI output folder
    out = capsys.readouterr()
    assert out.out == ""  # quiet: no epoch lines, no progress bars, no tables


def test_a_closed_form_trial_reports_its_single_validation(fake_trial, tiny_split):
    fake_trial.parameters = {"model.reg_weight": 50.0}
    model, metrics = recstudio.run("EASE", tiny_split, mode="tune")
    assert model.config["reg_weight"] == 50.0
    assert [t for t, _ in fake_trial.metrics] == ["PERIODICAL", "FINAL"]
    assert fake_trial.metrics[-1][1]["default"] == metrics["mrr@10"]


def test_a_bad_search_space_key_fails_the_trial_naming_the_closest_key(fake_trial, tiny_split):
    fake_trial.parameters = {"model.embed_dimension": 16}
    with pytest.raises(ConfigError, match="Did you mean 'embed_dim'"):
        recstudio.run("BPR", tiny_split, mode="tune", epochs=1)


# ---- a real NNI experiment -----------------------------------------------------------------------
def rest(port: int, api: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{api}", timeout=10) as r:
        return json.load(r)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_real_two_trial_experiment_on_ml100k(tmp_path, no_nni_env):
    pytest.importorskip("nni")
    bin_dir = Path(sys.executable).parent
    if shutil.which("nnictl", path=f"{bin_dir}:{os.environ['PATH']}") is None:
        pytest.skip("nnictl is not installed")
    recstudio.data.load_dataset("ml-100k")  # convert + cache once (RECSTUDIO_DATA_DIR); trials read the cache
    port, home = free_port(), tmp_path / "home"
    home.mkdir()
    env = clean_env(HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}")  # ~/nni-experiments/.experiment too
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({
        "experimentName": "recstudio-test", "searchSpace": model_search_space("BPR"),
        "trialCommand": f"{shlex.quote(sys.executable)} run.py --mode tune -m BPR -d ml-100k --epochs 1",
        "trialCodeDirectory": str(ROOT), "trialConcurrency": 2, "maxTrialNumber": 2,
        "maxExperimentDuration": "10m", "experimentWorkingDirectory": str(tmp_path / "nni"),
        "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}},
        "trainingService": {"platform": "local"}}))
    registry = home / "nni-experiments" / ".experiment"
    try:
        r = subprocess.run(["bash", "tune.sh", str(config), "--port", str(port)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"http://127.0.0.1:{port}" in r.stdout and f"nnictl stop --port {port}" in r.stdout
        deadline = time.monotonic() + 240
        while True:
            trials = rest(port, "trial-jobs")
            if len(trials) == 2 and all(t["status"] in FINAL_STATES for t in trials):
                break
            assert time.monotonic() < deadline, f"trials did not finish: {trials}"
            time.sleep(1)
        assert [t["status"] for t in trials] == ["SUCCEEDED", "SUCCEEDED"], trials
        metrics = rest(port, "metric-data")
        for trial in trials:
            mine = [m for m in metrics if m["trialJobId"] == trial["trialJobId"]]
            periodical = [float(json.loads(m["data"])) for m in mine if m["type"] == "PERIODICAL"]
            final = [json.loads(json.loads(m["data"])) for m in mine if m["type"] == "FINAL"]
            assert len(periodical) == 1 and 0 <= periodical[0] <= 1
            assert len(final) == 1 and final[0]["default"] == final[0]["mrr@10"] and "ndcg@10" in final[0]
            trial_dir = Path(trial["logPath"])
            assert trial_dir.is_relative_to(tmp_path / "nni")
            assert list(trial_dir.glob("BPR-ml-100k-*/test_metrics.json"))  # the run folder is in the trial's
    finally:
        experiments = json.loads(registry.read_text()) if registry.exists() else {}
        for exp_id in experiments:
            subprocess.run(["nnictl", "stop", exp_id], env=env, capture_output=True, timeout=60)
        leftover = []
        for info in experiments.values():
            deadline = time.monotonic() + 20
            while pid_alive(info["pid"]) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(info["pid"]):
                leftover.append(info["pid"])
                os.killpg(info["pid"], signal.SIGKILL)  # the manager leads its own process group
    assert experiments, "tune.sh registered no experiment"
    assert not leftover, f"NNI manager processes {leftover} outlived nnictl stop"
    assert not port_open(port)
    assert not (Path.home() / "nni-experiments" / experiments.popitem()[0]).exists()
