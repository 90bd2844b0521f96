"""Recorded answers: a trace's ``output_tok_ids`` give the ids of the blocks each request generates (``trace.answers``),
chained from its prompt's as vLLM hashes prompt + generated tokens (``hash_block_tokens``,
vllm/v1/core/kv_cache_utils.py; ``KVCacheManager.cache_blocks``), instead of the ids inferred from a later prompt."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from sim.config import load_config
from sim.errors import TraceError
from sim.serving.run import run_serving
from tests.loader_helpers import load
from trace.continuations import generated_blocks
from trace.workload import load_workload

BS = 16  # tokens a block (the least vLLM's attention backends take)
NO_LOWER_TIERS = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]
SYSTEM = list(range(1, 17))  # a full block every conversation starts with
ASK = list(range(101, 109))  # turn 1's question: 8 tokens
ANSWER = list(range(201, 237))  # turn 1's recorded answer: 36 tokens
FOLLOW_UP = list(range(301, 313))  # turn 2's question: 12 tokens


def _record(at_s: float, prompt: list[int], answer: list[int]) -> dict:
    return {"input_toks": len(prompt), "output_toks": len(answer), "arrival_time_ns": int(at_s * 1e9),
            "input_tok_ids": prompt, "output_tok_ids": answer}


def _write(tmp_path, records: list[dict]):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _served(path, *sets: str):
    config = load_config(None, sets=[f"workload.trace={path}", f"serving.block_size={BS}", "serving.num_instances=1",
                                     *NO_LOWER_TIERS, *sets])
    result, requests = run_serving(load_workload(config), config, "single")
    return result.metrics, requests.cached_tokens.tolist()


# Turn 1: SYSTEM + ASK (24 tokens) and ANSWER: KV of 24 + 35 tokens (the last answer token is never fed back), 3 full
# blocks: SYSTEM, ASK + ANSWER[:8] and ANSWER[8:24], the last two generated (the first completes the prompt's partial
# block); ANSWER[24:35] is left in a partial block.
TURN_1 = _record(0.0, SYSTEM + ASK, ANSWER)
OTHER = _record(10.0, SYSTEM + list(range(401, 418)), [1])  # another conversation on the same system block: 33 tokens
TURN_2 = SYSTEM + ASK + ANSWER + FOLLOW_UP  # 72 tokens: 4 full blocks, the 4th ANSWER[24:] + FOLLOW_UP[:4]


def test_a_next_turn_holding_the_recorded_answer_finds_its_blocks(tmp_path):
    """Turn 2 (far later) is turn 1's prompt and answer token for token, then its question (72 tokens: 5 blocks, 4
    full): it finds SYSTEM and both generated blocks, 48 tokens (not its 4th: turn 1 never filled it). The system
    block is followed by other tokens in another conversation, so no later prompt was known to hold turn 1's answer:
    it found the system block only (16 tokens). Accesses: 2 + 3 + 5."""
    path = _write(tmp_path, [TURN_1, OTHER, _record(100.0, TURN_2, [1])])
    trace = load(path, block_size=BS)
    assert trace.answer_offsets.tolist() == [0, 2, 2, 2]  # OTHER: (33 + 0) // 16 - 33 // 16 = 0; turn 2 likewise
    assert trace.answer_ids.tolist() == trace.blocks(2)[1:3].tolist()  # turn 2's blocks at depths 1, 2
    metrics, cached = _served(path)
    assert cached == [0, 16, 48]
    assert (metrics["accesses"], metrics["hits"]) == (10, 1 + 3)


def test_a_next_turn_whose_first_answer_token_differs_misses_the_answer(tmp_path):
    """As in LLMServingSim's ShareGPT trace, the next turn's prompt holds the answer re-tokenised by the chat template:
    its first token differs (999 for 201). That token lies in turn 1's prompt's partial block, so the chain breaks
    there: turn 2 finds SYSTEM only (16 tokens), where inferring the answer's blocks from turn 2's prompt found 48."""
    turn_2 = _record(100.0, SYSTEM + ASK + [999] + ANSWER[1:] + FOLLOW_UP, [1])
    path = _write(tmp_path, [TURN_1, turn_2])
    trace = load(path, block_size=BS)
    assert set(trace.answer_ids.tolist()) == {-1}  # no prompt holds either generated block
    generated = generated_blocks(trace, BS, trace.block_id_bound())
    assert generated.continued == 0 and generated.ids.min() >= trace.block_id_bound()
    metrics, cached = _served(path)
    assert cached == [0, 16]
    assert (metrics["accesses"], metrics["hits"]) == (7, 1)


@pytest.mark.parametrize("seed", range(6))
def test_answer_ids_are_the_prompt_blocks_of_the_same_token_prefix(tmp_path, seed):
    """Random prompts and answers over two token values in 2-token blocks (prefixes recur often): each generated full
    block (depths input // 2 to (input + output - 1) // 2 - 1 of prompt + answer) has the id of a prompt block with the
    same token prefix, and -1 where no prompt has that prefix, checked against the prefixes themselves."""
    import random

    rng = random.Random(seed)
    records = [_record(i, [rng.randrange(2) for _ in range(rng.randrange(1, 9))],
                       [rng.randrange(2) for _ in range(rng.randrange(0, 7))]) for i in range(40)]
    trace = load(_write(tmp_path, records), block_size=2)
    prompt_of = {}  # token prefix through a prompt's full block -> its id
    for r, record in enumerate(records):
        for depth in range(record["input_toks"] // 2):
            prompt_of[tuple(record["input_tok_ids"][:2 * depth + 2])] = int(trace.blocks(r)[depth])
    for r, record in enumerate(records):
        tokens = record["input_tok_ids"] + record["output_tok_ids"][:max(record["output_toks"], 1) - 1]
        expected = [prompt_of.get(tuple(tokens[:2 * depth + 2]), -1)
                    for depth in range(record["input_toks"] // 2, len(tokens) // 2)]
        assert trace.answer_ids[trace.answer_offsets[r]:trace.answer_offsets[r + 1]].tolist() == expected


def test_the_recorded_answers_follow_a_range_a_drop_and_a_cut_prompt(tmp_path):
    """Turn 1, the other conversation, turn 2 (as in the first test, 2 recorded answer blocks for turn 1 and none for
    the other; turn 2 answers 36 tokens too: KV of 72 + 35 tokens, 2 more full blocks that no prompt holds)."""
    trace = load(_write(tmp_path, [TURN_1, OTHER, _record(100.0, TURN_2, ANSWER)]), block_size=BS)
    held = trace.blocks(2)[1:3].tolist()
    assert (trace.answer_offsets.tolist(), trace.answer_ids.tolist()) == ([0, 2, 2, 4], held + [-1, -1])
    part = load(tmp_path / "t.jsonl", block_size=BS)
    part.select_range(1 / 3, 1.0)  # the other conversation and turn 2
    assert (part.answer_offsets.tolist(), part.answer_ids.tolist()) == ([0, 0, 2], [-1, -1])
    dropped = load(tmp_path / "t.jsonl", block_size=BS)
    dropped.drop(np.array([False, True, False]), "test")
    assert (dropped.answer_offsets.tolist(), dropped.answer_ids.tolist()) == ([0, 2, 4], held + [-1, -1])
    # turn 2 cut to 63 tokens: its recorded answer no longer follows it; KV of 63 + 35 tokens: 98 // 16 - 63 // 16 = 3
    # blocks of its own; turn 1 (24 tokens) is not cut and keeps its answer
    cut = load(tmp_path / "t.jsonl", block_size=BS)
    cut.truncate_inputs(63)
    assert (cut.answer_offsets.tolist(), cut.answer_ids.tolist()) == ([0, 2, 2, 5], held + [-1] * 3)
    cut.truncate_inputs(20)  # every prompt: turn 1 and 2 (20 + 35) // 16 - 1 = 2 blocks of their own; the other 0
    assert (cut.answer_offsets.tolist(), cut.answer_ids.tolist()) == ([0, 2, 2, 4], [-1] * 4)


def test_an_answer_block_whose_prompts_were_dropped_gets_an_id_of_its_own(tmp_path):
    """Turn 2 holds turn 1's answer (its blocks 4 and 5: the other conversation's are 2 and 3); with turn 2 and the
    other dropped (as a run skips requests), the answer's ids lie past the run's id space: new ids from there, not an
    index beyond an array."""
    trace = load(_write(tmp_path, [TURN_1, OTHER, _record(100.0, TURN_2, [1])]), block_size=BS)
    trace.drop(np.array([False, True, True]), "test")
    space = trace.block_id_bound()  # turn 1's 2 blocks
    assert (space, trace.answer_ids.tolist()) == (2, [4, 5])
    generated = generated_blocks(trace, BS, space)
    assert generated.ids.tolist() == [space, space + 1] and generated.num_ids == space + 2


def test_an_output_tok_ids_list_of_another_length_is_skipped_and_counted(tmp_path):
    """output_tok_ids must number output_toks: a row of 3 ids for 36 tokens is skipped (token_ids_length_mismatch),
    and strict validation names its record and key; an empty list where output_toks is 0 is a list of no ids."""
    short = {**TURN_1, "output_tok_ids": ANSWER[:3], "arrival_time_ns": 5}
    none = {**TURN_1, "output_toks": 0, "output_tok_ids": [], "arrival_time_ns": 6}
    path = _write(tmp_path, [TURN_1, short, none])
    trace = load(path, block_size=BS)
    assert (len(trace), trace.provenance.skip_reasons) == (2, {"token_ids_length_mismatch": 1})
    assert trace.answer_offsets.tolist() == [0, 2, 2]  # (24 + 0) // 16 - 24 // 16 = 0 for the answer of no token
    with pytest.raises(TraceError, match="record 2 .*'output_tok_ids': token ids length mismatch"):
        load(path, block_size=BS, strict_validation=True)


def test_output_tok_ids_without_input_tok_ids_are_not_read(tmp_path, caplog):
    """An answer's ids continue its prompt's chain: without input_tok_ids there is none, so they are not read (a
    note says so), and a list of another length skips nothing."""
    records = [{k: v for k, v in r.items() if k != "input_tok_ids"} for r in (TURN_1, {**OTHER, "output_tok_ids": []})]
    with caplog.at_level("WARNING", logger="kvsim"):
        trace = load(_write(tmp_path, records), block_size=BS)
    assert (trace.provenance.block_ids, trace.provenance.skip_reasons, trace.answer_offsets) == ("unique", {}, None)
    assert "output_tok_ids are not read: no record has input_tok_ids" in caplog.text


def test_the_workload_cache_keeps_the_recorded_answers(tmp_path, run_cli):
    """The first test's trace through a workload cache: the run that builds it and the run that reads it report the
    same, the answer's blocks found (4 hits)."""
    path = _write(tmp_path, [TURN_1, OTHER, _record(100.0, TURN_2, [1])])
    reports = []
    for run in ("miss", "hit"):
        report = tmp_path / f"{run}.json"
        status, _, err = run_cli("--workload-trace", path, "--workload-cache", tmp_path / "w.cache", "--no-plot",
                                 "--quiet", "--report-json", report, "--set", f"serving.block_size={BS}",
                                 "--set", "serving.num_instances=1", *[a for s in NO_LOWER_TIERS for a in ("--set", s)])
        assert status == 0, err
        reports.append(json.loads(report.read_text()))
        reports[-1].pop("timing")  # (the run's wall time and memory)
    assert reports[0] == reports[1]
    assert reports[0]["runs"][0]["metrics"]["hits"] == 4


def _chained_hits(records: list[dict], block_size: int) -> tuple[int, int]:
    """Block lookups and the prompt blocks an unbounded vLLM prefix cache finds, counted by hand: each full block's
    key is sha256 over its parent's key and its tokens (``hash_block_tokens``); a request caches every full block of
    its prompt + the answer tokens fed back (all but the last), and finds the longest cached run of its prompt's
    full blocks."""
    cached: set[bytes] = set()
    lookups = hits = 0
    for record in sorted(records, key=lambda r: r["arrival_time_ns"]):
        prompt = record["input_tok_ids"]
        tokens = prompt + record["output_tok_ids"][:max(record["output_toks"], 1) - 1]
        keys, parent = [], b""
        for start in range(0, len(tokens) - block_size + 1, block_size):
            block = tokens[start:start + block_size]
            parent = hashlib.sha256(parent + struct.pack(f"<{block_size}q", *block)).digest()
            keys.append(parent)
        lookups += -(-len(prompt) // block_size)
        for key in keys[:len(prompt) // block_size]:
            if key not in cached:
                break
            hits += 1
        cached.update(keys)
    return lookups, hits


def test_sharegpt_hits_at_most_what_its_recorded_answers_allow(shared_data):
    """LLMServingSim's ShareGPT trace: its next turns hold the previous answers re-tokenised (the first answer token
    differs), so vLLM's chain breaks at the prompt's partial block and an answer is never found. The serving ceiling
    is the hand-counted hits (1,220 of 16,225 lookups); a single-node run, whose caches hold every block, finds at
    most that (it found 1,950 with answers inferred from the next prompts)."""
    from trace.stats import serving_reuse_ceiling

    path = shared_data / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    lookups, hits = _chained_hits(records, 16)
    trace = load(path, block_size=16)
    assert trace.num_accesses == lookups
    assert round(serving_reuse_ceiling(trace) * lookups) == hits
    config = load_config(None, sets=[f"workload.trace={path}"])
    result, _ = run_serving(load_workload(config), config, "single")
    assert result.metrics["accesses"] == lookups and result.metrics["hits"] <= hits


def test_a_cut_prompts_own_answer_blocks_are_those_of_its_kv_less_the_last_token(tmp_path):
    """Turn 2 (72 tokens, 36 answered) cut to 60: the KV computed is 60 + 35 tokens (the last answer token is never
    fed back), 95 // 16 = 5 full blocks, of which the prompt fills 60 // 16 = 3: 2 blocks of its own, not
    (60 + 36) // 16 - 3 = 3 (the 60 + 35 = 95 tokens stop one short of a block boundary; 63 and 20 do not tell)."""
    trace = load(_write(tmp_path, [TURN_1, OTHER, _record(100.0, TURN_2, ANSWER)]), block_size=BS)
    held = trace.blocks(2)[1:3].tolist()  # turn 1's generated blocks, as turn 2's prompt holds them
    trace.truncate_inputs(60)
    assert (trace.answer_offsets.tolist(), trace.answer_ids.tolist()) == ([0, 2, 2, 4], held + [-1, -1])


def test_an_answer_block_whose_id_is_the_id_space_itself_gets_a_new_id_too(tmp_path):
    """As above without the other conversation: turn 1's answer blocks are turn 2's prompt blocks 2 and 3, and with
    turn 2 dropped the run's id space is turn 1's 2 blocks, so the first answer id is the space's bound itself, the
    first new id: each answer block gets a new id of its own (2 and 3), not one kept as 2 beside a new 2."""
    trace = load(_write(tmp_path, [TURN_1, _record(100.0, TURN_2, [1])]), block_size=BS)
    trace.drop(np.array([False, True]), "test")
    space = trace.block_id_bound()
    assert (space, trace.answer_ids.tolist()) == (2, [2, 3])
    generated = generated_blocks(trace, BS, space)
    assert generated.ids.tolist() == [2, 3] and generated.num_ids == 4


def test_an_answer_only_an_earlier_prompt_holds_makes_outputs_in_next_turn_false_read(tmp_path, run_cli):
    """Turn 2's prompt recorded first (t = 0), turn 1 later (t = 100) with its answer: turn 1's 2 generated blocks are
    the earlier prompt's blocks at depths 1 and 2, though no later prompt holds them. A cache-only replay with its
    outputs inserted finds them (SYSTEM + the 2 answer blocks: 3 HBM hits); prompts replayed as recorded
    (outputs_in_next_turn=false) give them ids of their own (SYSTEM alone: 1). The setting changes the run, so it is
    read, not refused as changing nothing."""
    path = _write(tmp_path, [_record(0.0, TURN_2, [1]), _record(100.0, SYSTEM + ASK, ANSWER)])
    hits = {}
    for value in ("true", "false"):
        report = tmp_path / f"{value}.json"
        status, _, err = run_cli("--cache-only", "--workload-trace", path, "--no-plot", "--quiet", "--report-json",
                                 report, "--set", f"serving.block_size={BS}", "--set", "cache.insert_outputs=true",
                                 "--set", f"workload.outputs_in_next_turn={value}")
        assert status == 0, err
        hits[value] = json.loads(report.read_text())["runs"][0]["metrics"]["tiers"]["hbm"]["hits"]
    assert hits == {"true": 3, "false": 1}


def test_a_drop_keeps_each_remaining_requests_own_answer_count(tmp_path):
    """Turn 1 (2 answer blocks), the other conversation (none), turn 2 (2 of its own): with turn 1 dropped the
    others' counts are 0 and 2, in their order (offsets 0, 0, 2), not turn 2's blocks credited to the other."""
    trace = load(_write(tmp_path, [TURN_1, OTHER, _record(100.0, TURN_2, ANSWER)]), block_size=BS)
    trace.drop(np.array([True, False, False]), "test")
    assert (trace.answer_offsets.tolist(), trace.answer_ids.tolist()) == ([0, 0, 2], [-1, -1])
