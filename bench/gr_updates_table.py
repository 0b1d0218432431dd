#!/usr/bin/env python3
"""The table of bench/gr_updates.sh from the runs' summary.json files.

    python3 bench/gr_updates_table.py [PREFIX]      (default gru; runs/PREFIX_<method><GRU_TAG>)

Per method: old-document Hits@1 before the updates (the teacher as increment 0) and after the
third, its drop; the mean forgetting over the slices learned before the last update (old,
update1, update2: right after its own increment minus after the last); each update's Hits@1
after the last update (n test queries, 95% Wilson interval) and right after its own update;
the mean of the updates over the old documents' Hits@1 after; the wall time of the two runs;
the replay buffer (rows, MB).
"""
import json
import re
import os
import sys

LABELS = {
    "naive": "naive fine-tuning",
    "replay": "replay (stored rows) + EWC",
    "pseudo": "pseudo-query replay + EWC",
    "pseudo8": "pseudo-query replay, 8 per document + EWC",
    "pseudo16": "pseudo-query replay, 16 per document + EWC",
    "documents": "replay of new spans of the kept documents + EWC",
    "documents_only": "replay of new spans of the kept documents, no EWC",
    "sam": "replay + EWC + SAM (rho 0.05)",
    "lora": "LoRA r8 + replay + EWC",
}


def share(s):
    if "lo" in s:
        return f"{s['value']:.3f} (n={s['n']}, {s['lo']:.3f}-{s['hi']:.3f})"
    return f"{s['value']:.3f} (n={s['n']})"


def times(prefix):
    out = {}
    try:
        for line in open(f"runs/{prefix}_times.txt"):
            name, sec = line.split()
            out[name.split("=", 1)[-1]] = int(sec)  # the latest run of a name wins
    except OSError:
        pass
    return out


def run_seconds(walls, run):
    """The run's wall time from runs/PREFIX_times.txt, else its summary's time_s."""
    if run in walls:
        return walls[run]
    try:
        return round(json.load(open(f"runs/{run}/summary.json")).get("time_s", 0))
    except OSError:
        return 0


def replay_ratio(run):
    """The replay pass's ratio (replayed samples per new row) from the run's config.yaml."""
    try:
        text = open(f"runs/{run}/config.yaml").read()
    except OSError:
        return ""
    m = re.search(r"name: \"?replay\"?\n(?:\s+\w+: .*\n)*?\s+ratio: (\S+)", text)
    return f", {float(m.group(1)):g} per new row" if m else ""


def buffer(summary):
    for p in summary.get("compression", []):
        s = p.get("summary", {})
        if "capacity" in s and "buffer" in s:
            rows = f"{s['buffer']} rows"
            if "bytes" in s:
                rows += f", {s['bytes'] / 1e6:.2f} MB"
            kind = {"pseudo_queries": " (pseudo queries)", "documents": " (documents)"}
            return rows + kind.get(s.get("source"), "")
    return "-"


def main():
    prefix = sys.argv[1] if len(sys.argv) > 1 else "gru"
    methods = os.environ.get("GRU_METHODS", "naive replay pseudo sam lora").split()
    t = times(prefix)
    tag = os.environ.get("GRU_TAG", "")
    print("| method | old before | old after | old drop (points) | mean forgetting (old, u1, u2) "
          "| update1 | update2 | update3 | updates right after their own | new mean (/ old after) "
          "| time (s) "
          "| replay buffer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        label = LABELS.get(m, m) + (f" ({tag})" if tag else "")
        m += tag
        label += replay_ratio(f"{prefix}_{m}")
        try:
            s = json.load(open(f"runs/{prefix}_{m}/summary.json"))
            c = s["continual"]
        except (OSError, KeyError):
            print(f"| {label} | (no run) |" + " |" * 10)
            continue
        sl = c["slices"]
        r = c["accuracy_matrix"]
        before = r[0][0]
        after = sl[0]
        forgetting = [x["forgetting"] for x in sl[:-1] if "forgetting" in x]
        mean_f = sum(forgetting) / len(forgetting) if forgetting else float("nan")
        new = [x["value"] for x in sl[1:]]
        mean_new = sum(new) / len(new) if new else float("nan")
        ratio = mean_new / after["value"] if after["value"] > 0 else float("inf")
        sec = sum(run_seconds(t, f"{prefix}_{m}{suffix}") for suffix in ("_old", ""))
        ups = [share(x) for x in sl[1:]] + ["-"] * (3 - len(sl[1:]))
        learned = " / ".join(f"{x['learned']:.3f}" for x in sl[1:] if "learned" in x)
        print(f"| {label} | {before:.3f} | {share(after)} | {100 * (before - after['value']):.1f} | "
              f"{100 * mean_f:.1f} | {' | '.join(ups)} | {learned} | {mean_new:.3f} ({ratio:.2f}x) | {sec} | {buffer(s)} |")
    if f"{prefix}_teacher" in t:
        print(f"\nteacher: {t[prefix + '_teacher']} s")


if __name__ == "__main__":
    main()
