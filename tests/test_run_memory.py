"""What a serving run keeps once requests have left: nothing of theirs (``sim.serving.job``: only requests in flight
have a ``Job``), and no per-block table of an instance's busiest moment (a fleet has 10,240 of them)."""

from __future__ import annotations

import gc
import sys
import types

import numpy as np

from sim.cluster.run import ClusterRun
from sim.config import load_config
from sim.serving.admission import admit
from sim.serving.block_pool import BlockPool
from sim.serving.freed_positions import latest_positions
from sim.serving.job import Job
from trace.workload import load_workload, with_trace_block_size


class _Clock:
    now = 0.0


def test_an_idle_block_pool_keeps_no_table_of_its_busiest_moment():
    pool = BlockPool(10_000, _Clock())
    empty = sys.getsizeof({})  # what a pool holding no block needs: an empty dict
    pool.hold(list(range(5_000)))
    pool.hold(list(range(2_500)))  # a second request sharing the first half
    busy = sys.getsizeof(pool.refs)
    assert busy > 100 * empty  # (a table of 5,000 keys)
    assert pool.let_go(list(range(5_000))) == list(range(2_500, 5_000))  # the shared half is still held
    assert len(pool.refs) == 2_500 and pool.used == 2_500
    assert pool.let_go(list(range(2_500))) == list(range(2_500))
    assert pool.used == 0 and sys.getsizeof(pool.refs) == empty  # was the busy table's size, for good
    pool.hold([7, 8])  # still usable: the same dict, filled again
    assert 7 in pool and pool.used == 2


def test_the_latest_uses_of_an_idle_instance_keep_no_table_of_its_busiest_moment():
    # Belady's and the learned policy's record of each held block's latest access (``KVCacheManager.latest_use``)
    latest = {key: key for key in range(5_000)}
    busy = sys.getsizeof(latest)
    positions = latest_positions(latest, list(range(4_999, -1, -1)), np.full(5_000, 3, dtype=np.int64))
    assert positions.tolist() == [max(key, 3) for key in range(4_999, -1, -1)]  # its latest access or the freeing one
    assert latest == {} and sys.getsizeof(latest) == sys.getsizeof({}) < busy / 100


def _referents(obj) -> list:
    """What ``obj`` holds; of a function only what it closes over and its defaults, not its module's globals (the walk
    would reach the whole interpreter: other libraries' objects, some of which warn when merely looked at)."""
    if type(obj) is types.FunctionType:
        return [*(obj.__closure__ or ()), *(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
    return gc.get_referents(obj)


def _jobs_reachable_from(root) -> list[Job]:
    """Every ``Job`` reachable from ``root`` (a walk of the referents, arrays, classes and modules not entered)."""
    seen, todo, jobs = {id(root)}, [root], []
    while todo:
        obj = todo.pop()
        if type(obj) is Job:
            jobs.append(obj)
        for ref in _referents(obj):
            kind = type(ref)  # (not isinstance: it asks the object for its __class__)
            if id(ref) in seen or issubclass(kind, (type, np.ndarray, types.ModuleType)):
                continue
            seen.add(id(ref))
            todo.append(ref)
    return jobs


def test_a_finished_run_holds_no_request_job():
    # 1 rack x 2 nodes x 2 GPUs, a multi-turn workload whose turns' prompts hold their history (prefix caching on,
    # a prompt's block ids a list): every instance admits requests (the admission's answer was kept per instance
    # with its last job, prompt block list and all, after the job had left)
    config = load_config(None, sets=["cluster.num_racks=1", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2",
                                     "workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=60",
                                     "workload.synthetic.rate_rps=20", "workload.synthetic.input_tokens_mean=256",
                                     "workload.synthetic.output_tokens_mean=16", "workload.synthetic.turns_mean=4",
                                     "workload.synthetic.think_time_median_s=0.5"])
    trace = load_workload(config)
    config = with_trace_block_size(config, trace)
    admit(trace, config)
    run = ClusterRun(trace, config)
    result = run.run()
    assert result.metrics["requests_completed"] == 60 and len(run.insts) == 4 and run.prefix_caching
    assert _jobs_reachable_from(run) == []  # every request left: none is in flight
