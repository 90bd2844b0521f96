"""Bad input, round 10 (helper hfuzz9): round 9's leftovers (an NS-3 table's repeated size, a LightGBM header's
class count, --check-calibration's second read of its overlay, --seeds counts in the HTML report), then the CSV
writers, workload caches, calibration tables and --html paths. Each case was a traceback (exit 1), a crash, a
message that named nothing, or a run that went ahead where one line and exit 2 belonged."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import Case, check_bad_input

LOOKUP_PD = ["--pd", "--quiet", "--no-plot", "--set", "network.lookup={tmp}/n.json"]


def _rows(*rows: tuple[float, float]) -> str:
    """An NS-3 table of (size_mib, ns3_ms) rows, in the order given."""
    return '{"rows": [' + ", ".join(f'{{"size_mib": {s}, "ns3_ms": {t}}}' for s, t in rows) + "]}"


CASES: dict[str, Case] = {
    # a size given twice said only "needs two or more distinct sizes with non-decreasing times", naming no row
    "lookup_repeated_size_names_both_rows": Case(LOOKUP_PD, names=("n.json", "rows 0 and 2", "1048576 bytes", "1 MiB"),
                                                 files={"n.json": _rows((1, 1), (2, 2), (1, 1.5))}),
    "lookup_time_falling_names_its_rows": Case(LOOKUP_PD, names=("n.json", "row 0 (2097152 bytes)", "row 1 (1048576",
                                                                 "takes less time"),
                                               files={"n.json": _rows((2, 1), (1, 2))}),
    "lookup_one_row": Case(LOOKUP_PD, names=("n.json", "two or more distinct sizes, got 1"),
                           files={"n.json": _rows((1, 1))}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)
