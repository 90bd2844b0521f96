"""The shares behind ``learned.fingerprint.REFUSE_SHARE``: for each pair of a training workload and a judged one,
the share of the judged run's sampled 8-request grams found in the training fingerprint (what ``LearnedModel.check``
compares), and for the rule's gram length the chance share of shorter grams between independent halves.

    python benchmarks/probe_overlap.py

Legitimate pairs (other requests: a trace's later half, a synthetic workload on another seed) against copies,
slices and re-timed copies of the training requests (files written to a temporary folder). Figures are recorded in
learned/README.md ("Train/test overlap").
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from learned.fingerprint import distinct_once, fingerprint, overlap, request_grams  # noqa: E402
from sim.command import command_status, end_process  # noqa: E402
from sim.config import load_config  # noqa: E402
from trace.request import Trace  # noqa: E402
from trace.workload import load_workload  # noqa: E402

TRACES = REPO.parent / "shared" / "data" / "traces"
MOONCAKE = TRACES / "mooncake_conversation.jsonl"
SYNTHETIC = ("multi-turn", "agentic", "system-prompt", "rag")


def load(*sets: str) -> Trace:
    return load_workload(load_config(None, sets=list(sets)))


def share(trained: Trace, judged: Trace) -> str:
    """'found / sampled = share' of ``judged``'s sampled grams in ``trained``'s fingerprint."""
    made = fingerprint(trained)
    hashes = np.array([int(h, 16) for h in made["hashes"]], dtype=np.uint64)
    found, sampled = overlap(hashes, made["modulus"], judged, made["gram"])
    return f"{found:,} / {sampled:,} = {found / sampled:.3f}" if sampled else "no sampled gram"


def copies(folder: Path) -> dict[str, Path]:
    """Files of Mooncake's training requests (its first 6,016): a head, a re-timed copy, a late slice, a thinned copy."""
    lines = MOONCAKE.read_text().splitlines(keepends=True)
    rows = [json.loads(line) for line in lines[:6016]]
    rng = np.random.default_rng(0)
    made = {
        "head -3000 (copy of requests [0, 3000))": "".join(lines[:3000]),
        "first half, timestamps + 1e6 ms": "".join(json.dumps({**r, "timestamp": r["timestamp"] + 10**6}) + "\n"
                                                    for r in rows),
        "requests [5000, 6016) alone": "".join(lines[5000:6016]),
        "first half, 1 request in 10 dropped at random": "".join(
            line for line, keep in zip(lines[:6016], rng.random(6016) >= 0.1, strict=True) if keep),
    }
    paths = {}
    for i, (name, text) in enumerate(made.items()):
        paths[name] = folder / f"copy{i}.jsonl"
        paths[name].write_text(text)
    return paths


def main() -> int:
    """Print the shares (no flags: the traces are the bundled public ones)."""
    description = __doc__.split("\n\n")[0].replace("``", "")  # reST quoting, not for a terminal
    argparse.ArgumentParser(prog="probe_overlap.py", description=description).parse_args()
    if not MOONCAKE.is_file():
        print(f"probe_overlap.py: error: {MOONCAKE} not found (the public data folder ../shared)", file=sys.stderr)
        return 2
    mooncake = f"workload.trace={MOONCAKE}"
    first = load(mooncake, "workload.range_end=0.5")
    print("trained on | judged on | found / sampled = share")
    print(f"Mooncake [0, 0.5) | Mooncake [0.5, 1) | {share(first, load(mooncake, 'workload.range_start=0.5'))}")
    print(f"Mooncake [0, 0.5) | Mooncake, whole file | {share(first, load(mooncake))}")
    with tempfile.TemporaryDirectory() as folder:
        for name, path in copies(Path(folder)).items():
            print(f"Mooncake [0, 0.5) | {name} | {share(first, load(f'workload.trace={path}'))}")
    print(f"Mooncake [0, 0.5) | multi-turn, seed 2 | {share(first, load('seed=2', 'workload.synthetic.num_requests=10000'))}")
    for kind in SYNTHETIC:
        sets = [f"workload.synthetic.kind={kind}", "workload.synthetic.num_requests=10000"]
        print(f"{kind}, seed 1 | {kind}, seed 2 | {share(load('seed=1', *sets), load('seed=2', *sets))}")
    print(f"multi-turn, seed 1 | Mooncake [0.5, 1) | "
          f"{share(load('seed=1', 'workload.synthetic.num_requests=10000'), load(mooncake, 'workload.range_start=0.5'))}")
    for name in ("azure_conv_2023.csv", "llmservingsim_sharegpt_llama31_8b_300.jsonl"):
        path = f"workload.trace={TRACES / name}"
        print(f"{name} [0, 0.5) | [0.5, 1) | {share(load(path, 'workload.range_end=0.5'), load(path, 'workload.range_start=0.5'))}")

    print("\nchance share of shorter grams between independent halves (all grams, unsampled)")
    halves = {"Mooncake": (first, load(mooncake, "workload.range_start=0.5")),
              "Azure conversation": tuple(load(f"workload.trace={TRACES / 'azure_conv_2023.csv'}", f"workload.{key}=0.5")
                                          for key in ("range_end", "range_start")),
              "multi-turn seeds 1, 2": tuple(load(f"seed={s}", "workload.synthetic.num_requests=10000") for s in (1, 2))}
    for name, (a, b) in halves.items():
        cells = []
        for gram in (1, 2, 4, 8):
            mine = distinct_once(request_grams(b, gram))
            cells.append(f"{gram}: {np.isin(mine, distinct_once(request_grams(a, gram))).mean():.4f}")
        print(f"{name} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    end_process(command_status("probe_overlap.py", main))  # without the interpreter's teardown: see sim.command
