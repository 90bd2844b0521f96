"""Measured step-latency tables (sim.serving.measured_latency): Splitwise's and DistServe's readers against hand-made
tables, and, property-tested, against every row or curve they may meet (read whole, or refused naming it)."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import InputError
from sim.serving.measured_latency import read_distserve, read_splitwise, read_table

HEADER = "model,hardware,prompt_size,batch_size,token_size,peak_power,average_power,prompt_time,token_time,e2e_time," \
         "tensor_parallel"


def test_splitwise_rows_become_median_points_in_seconds(tmp_path):
    path = tmp_path / "perf.csv"
    path.write_text(f"{HEADER}\n"
                    "llama-3.1-8b,a100-80gb,512,2,128,1,1,100,10,0,2\n"
                    "llama-3.1-8b,a100-80gb,512,2,128,1,1,120,14,0,2\n"
                    "llama-3.1-8b,a100-80gb,512,2,128,1,1,200,12,0,2\n"
                    "llama-3.1-8b,a100-80gb,512,2,256,1,1,130,11,0,2\n")
    steps = read_splitwise(path)
    prefill = [s for s in steps if s.phase == "prefill"]
    decodes = sorted((s for s in steps if s.phase == "decode"), key=lambda s: s.steps)
    # one prefill point: the same step measured four times (median of 100, 120, 130, 200 ms)
    assert len(prefill) == 1 and prefill[0].seconds == pytest.approx(0.125)
    assert (prefill[0].batch, prefill[0].tokens, prefill[0].tensor_parallel_size) == (2, 512, 2)
    # decode: token_size - 1 steps after the prefill's token; medians of 10, 14, 12 ms and of 11 ms
    assert [(d.steps, d.seconds) for d in decodes] == [(127, pytest.approx(0.012)), (255, pytest.approx(0.011))]


@pytest.mark.parametrize("row, named", [
    ("llama-3.1-8b,a100-80gb,512,x,128,1,1,100,10,0,2", "row 2: batch_size 'x'"),
    ("llama-3.1-8b,a100-80gb,512,2,1,1,1,100,10,0,2", "row 2: token_size"),
    ("llama-3.1-8b,a100-80gb,512,2,128,1,1,-5,10,0,2", "row 2: prompt_time"),
])
def test_a_bad_splitwise_row_is_named(tmp_path, row, named):
    path = tmp_path / "perf.csv"
    path.write_text(f"{HEADER}\n{row}\n")
    with pytest.raises(InputError, match=named):
        read_splitwise(path)


GOOD = "llama-3.1-8b,a100-80gb,512,2,128,1,1,100,10,0,2"


@pytest.mark.parametrize("text, named", [
    # a row without its model was dropped by the grouping (NaN keys), exit 0 with one point fewer
    (f"{HEADER}\n{GOOD}\n,a100-80gb,512,4,128,1,1,100,10,0,2\n", "row 3: model is empty"),
    (f"{HEADER}\n{GOOD}\nllama-3.1-8b,,512,4,128,1,1,100,10,0,2\n", "row 3: hardware is empty"),
    # inf passed the positive-integer test, then int() raised OverflowError (exit 1)
    (f"{HEADER}\nllama-3.1-8b,a100-80gb,inf,2,128,1,1,100,10,0,2\n", "row 2: prompt_size 'inf'"),
    # a time the fit cannot reach crashed the least-squares start (log of 0); beyond an hour is a unit error
    (f"{HEADER}\nllama-3.1-8b,a100-80gb,512,2,128,1,1,inf,10,0,2\n", "row 2: prompt_time 'inf'"),
    (f"{HEADER}\nllama-3.1-8b,a100-80gb,512,2,128,1,1,100,1e300,0,2\n", "row 2: token_time '1e300' is longer than"),
    # pandas read the first of two prompt_time columns and renamed the second: which one was meant?
    (f"{HEADER},prompt_time\n{GOOD},5\n", "column prompt_time more than once"),
    # one more field than the header: pandas made the first column the index and shifted every value left
    (f"{HEADER}\n{GOOD},4\n", "more fields than the header"),
], ids=["no-model", "no-hardware", "inf-size", "inf-time", "huge-time", "twice", "extra-field"])
def test_a_splitwise_table_read_wrongly_is_refused(tmp_path, text, named):
    path = tmp_path / "perf.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=named):
        read_splitwise(path)


def test_an_unreadable_table_is_named(tmp_path):
    """/proc/self/mem is a regular file whose first page cannot be read (EIO): an OSError, once exit 1."""
    if not Path("/proc/self/mem").is_file():
        pytest.skip("needs Linux's /proc")
    link = tmp_path / "mem.json"
    link.symlink_to("/proc/self/mem")
    for path in (Path("/proc/self/mem"), link):
        with pytest.raises(InputError, match="cannot read"):
            read_table(path)


def test_distserve_curves_are_evaluated_as_simdistserve_does(tmp_path):
    path = tmp_path / "profiler-a100-80g.vllm.json"
    path.write_text(json.dumps({"m": {"2": {"decoding_large_small_bs_threshold": 10, "prefill": [20, 0.1, 1e-5],
                                            "decoding_smallbs": [20, 0.001, 0.05], "decoding_largebs": [18, 0.002, 0.1]}}}))
    steps = read_distserve(path)
    one = next(s for s in steps if s.phase == "prefill" and s.batch == 4 and s.tokens == 512)
    assert one.gpu == "a100-80g" and one.tensor_parallel_size == 2
    # get_prefill_time: a + b x sum(prefill_len_list) + c x sum of each length squared (sum_num_tokens_sqr), not the
    # square of the sum: four prompts of 512 tokens add 4 x 512^2, a quarter of what one of 2,048 does; then / pp +
    # pp_const (1 ms x pp: LLMServe/DistServe 82831f1 simdistserve/estimators/time_estimator.py), pp = 1 here
    assert one.seconds == pytest.approx((20 + 0.1 * 2048 + 1e-5 * 4 * 512**2 + 1) / 1e3)
    single = next(s for s in steps if s.phase == "prefill" and s.batch == 1 and s.tokens == 2048)
    assert single.seconds == pytest.approx((20 + 0.1 * 2048 + 1e-5 * 2048**2 + 1) / 1e3)
    small = next(s for s in steps if s.phase == "decode" and s.batch == 4 and s.tokens == 256)
    large = next(s for s in steps if s.phase == "decode" and s.batch == 16 and s.tokens == 1024)
    assert small.seconds == pytest.approx((20 + 0.001 * 4 * 257 + 0.05 * 4) / 1e3)
    assert large.seconds == pytest.approx((18 + 0.002 * 16 * 1025 + 0.1 * 16) / 1e3)  # batch 16 >= threshold 10


def test_a_distserve_profile_with_a_byte_order_mark_reads_as_without(tmp_path):
    # a UTF-8 byte-order mark (a Windows editor's) was refused ("Unexpected UTF-8 BOM"), as a network table's was,
    # where a trace or YAML file with one is read: now the same steps as the file without it
    plain, marked = tmp_path / "profiler-a100-80g.vllm.json", tmp_path / "m" / "profiler-a100-80g.vllm.json"
    plain.write_text(json.dumps({"m": {"1": {"decoding_large_small_bs_threshold": 10, "prefill": [20, 0.1, 1e-5],
                                             "decoding_smallbs": [20, 0.001, 0.05], "decoding_largebs": [18, 0.002, 0.1]}}}))
    marked.parent.mkdir()
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_distserve(marked) == read_distserve(plain) != []


CURVES = {"decoding_large_small_bs_threshold": 95, "prefill": [18, 0.1, 7e-6], "decoding_smallbs": [19, 6e-4, 0.03],
          "decoding_largebs": [7, 5e-4, 0.15]}


def curves(tp: str = "1", **changed) -> str:
    """A DistServe profile of model m at one TP with ``changed`` curves (json writes NaN and Infinity as JSON5)."""
    return json.dumps({"m": {tp: {**CURVES, **changed}}})


@pytest.mark.parametrize("text, named", [
    # Infinity (JSON's extension) as the threshold: int() raised OverflowError, exit 1
    (curves(decoding_large_small_bs_threshold=math.inf), "m TP 1: decoding_large_small_bs_threshold inf is not"),
    # NaN or a curve that gives no time at a point: the fit's start had NaN residuals (exit 1)
    (curves(prefill=[math.nan, 0.1, 7e-6]), "m TP 1: prefill"),
    (curves(prefill=[-100, 0, 0]), "m TP 1: the prefill curve gives -99 ms at 1 x 128"),
    (curves(decoding_smallbs=[1e300, 0, 0]), "m TP 1: the decode curve gives 1e[+]300 ms"),
    # TP 0 divided by zero (exit 1); TP -2 ran and was fitted (exit 0); int() reads 2_0 as 20
    (curves("0"), "m: TP '0' is not a positive whole number"),
    (curves("-2"), "m: TP '-2' is not"),
    (curves("2_0"), "m: TP '2_0' is not"),
    # the string "123" was read as the three coefficients 1, 2, 3; true as 1
    (curves(prefill="123"), "m TP 1: prefill"),
    (curves(prefill=[True, 0.1, 7e-6]), "m TP 1: prefill"),
    # the JSON reader's own failures beyond JSONDecodeError: a 5,000-digit integer, nesting past the recursion limit
    (curves().replace("95", "1" + "0" * 5000), "not readable JSON"),
    ("[" * 100000 + "]" * 100000, "not readable JSON"),
    # the last of two entries of one key was read, silently
    (curves().replace('{"1": ', '{"1": {}, "1": '), "key '1' more than once"),
    # a key no curve is read from (a typo of one) and a threshold no batch is below were taken, exit 0
    (curves(decoding_smallbz=[1, 0, 0]), "m TP 1: unknown key 'decoding_smallbz'"),
    (curves(decoding_large_small_bs_threshold=-5), "decoding_large_small_bs_threshold -5 is not a batch size"),
], ids=["inf-threshold", "nan", "negative-time", "huge-time", "tp-0", "tp-negative", "tp-underscore", "string",
        "bool", "huge-int", "deep", "duplicate-key", "unknown-key", "negative-threshold"])
def test_a_distserve_table_read_wrongly_is_refused(tmp_path, text, named):
    path = tmp_path / "profiler-a100-80g.json"
    path.write_text(text)
    with pytest.raises(InputError, match=named):
        read_distserve(path)


SIZES = ["1", "2", "3", "2.0", "128", "512", " 3", "+4", "1e30", "", "x", "nan", "inf", "-1", "0", "1.5"]
TIMES = ["0.5", "10", "100", "1e3", "5e6", "", "x", "-inf", "0", "1e-330"]
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _oracle_number(cell: str, whole: bool, least: float = 0.0) -> float | None:
    """A Splitwise cell's value if a valid one (positive, finite, whole for sizes, times at most an hour), else None."""
    if not NUMBER.fullmatch(cell):
        return None
    value = float(cell)
    ok = math.isfinite(value) and value > least and (value == round(value) if whole else value * 1e-3 <= 3600)
    return value if ok else None


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from(["m1", "m2", "", " ", "NA"]), st.sampled_from(["g", "NaN", ""]),
                          st.sampled_from(SIZES), st.sampled_from(SIZES), st.sampled_from(SIZES),
                          st.sampled_from(TIMES), st.sampled_from(TIMES), st.sampled_from(SIZES)), min_size=1, max_size=6))
def test_splitwise_reader_refuses_or_reads_every_row(tmp_path_factory, rows):
    """Any table: a one-line InputError, or one point per distinct prefill and decode with the medians computed here
    (no row dropped, none misread)."""
    path = tmp_path_factory.mktemp("sw") / "perf.csv"
    path.write_text(HEADER + "\n" + "".join(f"{m},{g},{p},{b},{t},x,x,{pt},{tt},x,{tp}\n"
                                             for m, g, p, b, t, pt, tt, tp in rows))
    parsed = []
    for m, g, p, b, t, pt, tt, tp in rows:
        values = (_oracle_number(p, True), _oracle_number(b, True), _oracle_number(t, True, 1.0),
                  _oracle_number(pt, False), _oracle_number(tt, False), _oracle_number(tp, True))
        parsed.append(None if not m.strip() or not g.strip() or None in values else (m, g, *values))
    if None in parsed:
        with pytest.raises(InputError) as refused:
            read_splitwise(path)
        assert "\n" not in str(refused.value)
        return
    prefill, decode = {}, {}
    for m, g, p, b, t, pt, tt, tp in parsed:
        prefill.setdefault((m, g, int(tp), int(b), int(p)), []).append(pt * 1e-3)
        decode.setdefault((m, g, int(tp), int(b), int(p), int(t) - 1), []).append(tt * 1e-3)
    got = {(s.phase, s.model, s.gpu, s.tensor_parallel_size, s.batch, s.tokens)
           + ((s.steps,) if s.phase == "decode" else ()): s.seconds for s in read_splitwise(path)}
    want = {**{("prefill", *k): statistics.median(v) for k, v in prefill.items()},
            **{("decode", *k): statistics.median(v) for k, v in decode.items()}}
    assert got.keys() == want.keys()
    for key, seconds in want.items():
        assert got[key] == pytest.approx(seconds, rel=1e-12), key


JSON_VALUES = st.sampled_from([95, 2.5, -3, 0, math.nan, math.inf, True, None, "95", [], {}, [1, 2], 10**400])
COEFFICIENTS = st.lists(st.sampled_from([18, 0.1, 7e-6, -1, 0, 1e300, math.nan, True, "1"]), min_size=3, max_size=3)
# a valid profile's curves with at most one of them changed or dropped, or something else altogether
CURVE_SETS = st.one_of(
    st.dictionaries(st.sampled_from(tuple(CURVES)), st.one_of(COEFFICIENTS, JSON_VALUES), max_size=1).map(
        lambda changed: {**CURVES, **changed}),
    st.sampled_from(tuple(CURVES)).map(lambda dropped: {k: v for k, v in CURVES.items() if k != dropped}),
    JSON_VALUES)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from(["m", "n", ""]), st.one_of(st.dictionaries(
    st.sampled_from(["1", "2", "4", "0", "-1", "01", "2_0", " 2", "x"]), CURVE_SETS, max_size=3), JSON_VALUES),
    max_size=3))
def test_distserve_reader_refuses_or_reads_every_curve(tmp_path_factory, table):
    """Any profile: a one-line InputError, or every (model, TP) evaluated at all 22 grid points, each a positive time
    of at most an hour at a positive TP."""
    path = tmp_path_factory.mktemp("ds") / "profiler-a100-80g.json"
    path.write_text(json.dumps(table))
    try:
        steps = read_distserve(path)
    except InputError as error:
        assert "\n" not in str(error)
        return
    pairs = [(model, int(tp)) for model, by_tp in table.items() for tp in by_tp]
    assert len(steps) == 22 * len(pairs) and len(set(pairs)) == len(pairs)
    assert all(0 < s.seconds <= 3600 and s.tensor_parallel_size >= 1 for s in steps)
