"""A trace file kvsim cannot read (an unknown header or JSONL keys, a format's columns missing, no file) is one error
naming the file (and, for a misspelt header, the nearest formats and what each lacks); the format and time-unit lists
the flags offer are the loader's own."""

from __future__ import annotations

import pytest

from sim.errors import TraceError
from tests.loader_helpers import AZURE_HEADER, load, write


def test_unknown_csv_header(tmp_path):
    path = write(tmp_path, "unknown.csv", "foo,bar,baz\n1,2,3\n")
    with pytest.raises(TraceError, match="unrecognised trace header") as info:
        load(path)
    assert str(path) in str(info.value)


def test_an_unrecognised_header_names_the_nearest_format_and_its_missing_columns(tmp_path):
    """A newcomer's misspelt column (ContextToken, input_len) was told only "unrecognised trace header" and the five
    formats: now the formats whose columns the header names most of, and what each lacks; none when it names none."""
    cases = {"a.csv": ("TIMESTAMP,ContextToken,GeneratedTokens\n2023-11-16 18:15:46.5,1,2\n",
                       "; nearest: azure (missing ContextTokens);"),
             "s.csv": ("timestamp;contexttokens;generated\n2023-11-16 18:15:46.5;1;2\n",
                       "; nearest: azure (missing GeneratedTokens);"),
             "m.jsonl": ('{"timestamp": 0, "input_len": 600, "output_length": 5, "hash_ids": [1, 2]}\n',
                         "; nearest: mooncake (missing input_length);"),
             "t.csv": ("Timestamp,x\n1,2\n", "; nearest: azure (missing ContextTokens, GeneratedTokens) or burstgpt "
                                               "(missing Request tokens, Response tokens);"),
             "u.csv": ("foo,bar\n1,2\n", "'foo,bar'; pass --workload-format")}
    for name, (text, expected) in cases.items():
        with pytest.raises(TraceError, match="unrecognised trace header") as info:
            load(write(tmp_path, name, text))
        assert expected in str(info.value), str(info.value)


def test_unknown_jsonl_keys(tmp_path):
    path = write(tmp_path, "unknown.jsonl", '{"a": 1, "b": 2}\n')
    with pytest.raises(TraceError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_explicit_format_wrong_columns(tmp_path):
    path = write(tmp_path, "azure.csv", AZURE_HEADER + "2023-11-16 18:15:46.0000000,100,10\n")
    with pytest.raises(TraceError, match="missing column") as info:
        load(path, format="splitwise")
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(TraceError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_cli_unknown_header_and_missing_file(tmp_path, run_cli):
    unknown = write(tmp_path, "unknown.csv", "foo,bar\n1,2\n")
    status, _, err = run_cli("--trace-stats", "--workload-trace", unknown, "--no-plot")
    assert status == 2 and str(unknown) in err
    missing = tmp_path / "missing.jsonl"
    status, _, err = run_cli("--trace-stats", "--workload-trace", missing, "--no-plot")
    assert status == 2 and str(missing) in err


def test_the_format_and_time_unit_lists_agree():
    """The config keys' Literal values (which the flags use too) are exactly the loader's formats and units."""
    import typing

    from sim.config_workload import WorkloadConfig
    from trace.formats import FORMATS, TIME_UNITS

    hints = typing.get_type_hints(WorkloadConfig)
    assert set(typing.get_args(hints["format"])) == {*FORMATS, "auto"}
    assert set(typing.get_args(typing.get_args(hints["time_unit"])[0])) == set(TIME_UNITS)
