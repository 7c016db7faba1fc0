#!/usr/bin/env bash
# Start an NNI hyperparameter-tuning experiment of a RecStudio model (see docs/tuning.md).
#
#   bash tune.sh config.yaml                  # tune what config.yaml says (BPR on ml-100k), web UI on port 8080
#   bash tune.sh config.yaml --port 8081      # another port for the NNI web UI / REST server
#   bash tune.sh config.yaml -m SASRec        # tune another registered model with its bundled search space
#
# The config is checked first (trial command runs --mode tune, search-space keys are config keys of the
# model, tuner direction matches its metric); then `nnictl create` starts the experiment in the background.
# Stop it with `nnictl stop --port PORT` (or `nnictl stop <experiment id>`).
set -euo pipefail

usage() {
    echo "usage: bash tune.sh CONFIG.yaml [--port PORT] [-m MODEL]" >&2
    echo "  CONFIG.yaml  an NNI experiment config, e.g. config.yaml at the repository root" >&2
    echo "  --port PORT  port of the NNI web UI and REST server (default 8080)" >&2
    echo "  -m MODEL     tune this registered model (python run.py --list-models) with its search space" >&2
}

config=""
port=8080
model=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -p|--port)
            [ $# -ge 2 ] || { echo "error: $1 needs a port number." >&2; usage; exit 2; }
            port="$2"; shift 2 ;;
        --port=*) port="${1#--port=}"; shift ;;
        -m|--model)
            [ $# -ge 2 ] || { echo "error: $1 needs a model name." >&2; usage; exit 2; }
            model="$2"; shift 2 ;;
        --model=*) model="${1#--model=}"; shift ;;
        -*) echo "error: unknown option $1." >&2; usage; exit 2 ;;
        *)
            [ -z "$config" ] || { echo "error: one config file only (got $config and $1)." >&2; usage; exit 2; }
            config="$1"; shift ;;
    esac
done

if [ -z "$config" ]; then
    echo "error: no experiment config given; try: bash tune.sh config.yaml" >&2
    usage
    exit 2
fi
if [ ! -f "$config" ]; then
    echo "error: experiment config '$config' does not exist (config.yaml at the repository root is an example)." >&2
    exit 2
fi
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1025 ] || [ "$port" -gt 65535 ]; then
    echo "error: --port must be a number from 1025 to 65535, got '$port'." >&2
    exit 2
fi
if ! command -v nnictl >/dev/null 2>&1; then
    echo "error: nnictl (NNI) is not installed; install it with: pip install -e \".[nni]\"" >&2
    exit 2
fi
PYTHON="${PYTHON:-python}"

tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT
# check the config (and re-target it to -m MODEL); prints the config to start
prepare=("$PYTHON" -m recstudio.tune prepare "$config" ${model:+-m "$model" -o "$tmpdir/config.yaml"})
if ! start_config="$("${prepare[@]}")"; then
    exit 2
fi

nnictl create --config "$start_config" --port "$port"

echo
echo "NNI experiment started ($config${model:+, model $model})."
echo "  watch:   http://127.0.0.1:$port   (web UI: trials, intermediate and final metrics)"
echo "           nnictl trial ls          (trials and their final metrics, from the shell)"
echo "  results: each trial's logs and run folder (checkpoints, metrics.csv) are in"
echo "           <experimentWorkingDirectory, default ~/nni-experiments>/<experiment id>/environments/local-env/trials/<trial id>/"
echo "  stop:    nnictl stop --port $port"
