#!/usr/bin/env python3
"""Summarises a model run of `aml-triage triage --out` for docs/llm.md (issue 18).

Usage: scripts/llm-report.py MODEL.jsonl OFFLINE.jsonl [SERVER.log]

Per model-backed step: answers accepted at the first try, after repair prompts, degraded (and
why); step latency p50/p95 (a step is one or more calls); tokens per alert (all calls, those
of degraded steps included); calls per alert from the server's access log when given;
dispositions against the offline run of the same file.
"""
import collections
import json
import re
import sys

STEPS = ("context_builder", "decision_maker", "supervisor_check")


def load(path):
    with open(path) as f:
        return {d["alert_id"]: d for d in map(json.loads, filter(str.strip, f))}


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def reason(note):
    note = note or ""
    for key, label in (
        ("timed out", "timeout"),
        ("truncated", "max_tokens"),
        ("does not exist", "invented evidence id"),
        ("no evidence cited", "no citation in the text"),
        ("repeats the instructions", "echoed the prompt"),
        ("characters", "too long"),
        ("not the expected JSON", "not the schema's JSON"),
        ("unknown disposition", "unknown disposition"),
        ("circuit open", "circuit open"),
        ("budget", "budget"),
    ):
        if key in note:
            return label
    return note[:60] or "?"


def main():
    model, offline = load(sys.argv[1]), load(sys.argv[2])
    log = open(sys.argv[3]).read() if len(sys.argv) > 3 else ""
    n = len(model)
    print(f"alerts: {n}\n")
    print("| step | accepted first try | after repair | degraded | why degraded | step p50 s | step p95 s |")
    print("|---|---|---|---|---|---|---|")
    for step in STEPS:
        first = repaired = degraded = 0
        why = collections.Counter()
        lat = []
        for d in model.values():
            for a in d["agents"]:
                if a["agent"] != step:
                    continue
                lat.append(a["latency_ms"] / 1000)
                if a["degraded"]:
                    degraded += 1
                    why[reason(a.get("note"))] += 1
                elif "+repair@" in a["prompt_version"]:
                    repaired += 1
                else:
                    first += 1
        whys = ", ".join(f"{k} {v}" for k, v in why.most_common()) or "-"
        print(f"| {step} | {first} | {repaired} | {degraded} | {whys} | {pct(lat, .5):.1f} | {pct(lat, .95):.1f} |")
    tokens = [d["total_tokens"] for d in model.values()]
    print(f"\ntokens per alert (all calls): mean {sum(tokens) / n:.0f}, max {max(tokens)}")
    calls = len(re.findall(r"POST /v1/chat/completions", log))
    if calls:
        print(f"calls per alert (server log): {calls / n:.1f}")
    same = sum(model[a]["disposition"] == offline[a]["disposition"] for a in model if a in offline)
    up = sum(
        model[a]["disposition"] != offline[a]["disposition"] for a in model if a in offline
    )
    print(f"dispositions as offline: {same}/{n}; different: {up}")
    for a in sorted(model):
        if a in offline and model[a]["disposition"] != offline[a]["disposition"]:
            print(f"  {a}: offline {offline[a]['disposition']} -> model {model[a]['disposition']}")
    clears = [a for a, d in model.items() if d["disposition"] == "AUTO_CLEAR"]
    unsafe = [a for a in clears if model[a]["degraded"]]
    print(f"AUTO_CLEAR: {len(clears)}, of which degraded: {len(unsafe)}")


if __name__ == "__main__":
    main()
