"""Trace reading's boundaries by hand: the request-size bound, the zone a trace's first valid row fixes, the block
sizes a record's hash ids fit, and the time units a format fixes (``trace.scan``, ``trace.formats``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.errors import ConfigError
from tests.loader_helpers import load, write
from trace.formats import BLOCK_TOKEN_CANDIDATES, block_token_counts
from trace.sniff import check_time_unit

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def test_a_request_of_exactly_the_bound_is_kept_and_one_token_more_is_skipped(tmp_path):
    """``workload.max_request_tokens`` is the most tokens (prompt + output) one request may have: 240 + 10 = 250 is
    kept at a bound of 250, 241 + 10 skipped as too_many_tokens."""
    path = write(tmp_path, "t.csv", AZURE_HEADER + "2023-11-16 18:15:10,240,10\n2023-11-16 18:15:11,241,10\n"
                                                   "2023-11-16 18:15:12,100,10\n")
    trace = load(path, max_request_tokens=250)
    assert trace.input_tokens.tolist() == [240, 100]
    assert trace.provenance.skip_reasons == {"too_many_tokens": 1}


def test_the_zone_is_fixed_by_the_first_valid_row_not_the_first_row(tmp_path):
    """The first row states a zone but is skipped (no prompt tokens); the valid rows after it state none, as the
    first valid one does: every one is kept. Taken from the first row, all three were skipped as a zone mix."""
    path = write(tmp_path, "t.csv", AZURE_HEADER + "2023-11-16 18:15:09+00:00,0,10\n2023-11-16 18:15:10,100,10\n"
                                                   "2023-11-16 18:15:11,100,10\n2023-11-16 18:15:12,100,10\n")
    trace = load(path)
    assert trace.provenance.skip_reasons == {"zero_input_tokens": 1}
    assert trace.arrival_s.tolist() == [0.0, 1.0, 2.0]


def test_a_records_hash_ids_fit_the_sizes_whose_ceiling_division_gives_their_count():
    """``block_token_counts``: a record of t tokens and n hash ids fits block size s iff ceil(t / s) = n, for every
    t up to 70 and n up to 5 (a record of 32 tokens in 2 blocks fits 16 alone: 32-token blocks hold it in 1)."""
    for tokens in range(1, 71):
        for n in range(1, 6):
            counts = block_token_counts(np.array([tokens]), np.array([n]))
            expected = [int(math.ceil(tokens / s) == n) for s in BLOCK_TOKEN_CANDIDATES.tolist()]
            assert counts.tolist() == expected, (tokens, n)


def test_a_format_whose_key_names_its_unit_takes_that_unit_and_refuses_others():
    """LLMServingSim's arrival_time_ns: the unit it names is no conflict; another is refused. A numeric format takes
    any unit; datetimes none. (The given format is not sniffed, so no file is read.)"""
    check_time_unit("t.jsonl", "llmservingsim", "ns")
    with pytest.raises(ConfigError, match="'arrival_time_ns', in ns by their name; drop it"):
        check_time_unit("t.jsonl", "llmservingsim", "ms")
    check_time_unit("t.csv", "burstgpt", "ms")
    with pytest.raises(ConfigError, match="datetimes, which fix their own unit"):
        check_time_unit("t.csv", "azure", "s")
