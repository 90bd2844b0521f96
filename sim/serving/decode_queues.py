"""PD: the decode instance a request is bound to when it is dispatched, and each decode instance's queue of prefilled
requests waiting for its memory.

Deployments pick a request's decode instance when it arrives, together with its prefill instance, not when its
prefill ends: vLLM's disaggregated proxies by round robin (tests/v1/kv_connector/nixl_integration/toy_proxy_server.py
``get_next_client``; examples/online_serving/disaggregated_serving_p2p_nccl_xpyd/disagg_proxy_p2p_nccl_xpyd.py
``handle_request``: the pair named in the request id before the prefill is sent), SGLang's mini load balancer a random
pair (python/sglang/srt/disaggregation/mini_lb.py ``select_pair``; the decode server gets the request at once), llm-d's
EPP the decode pod first, then the prefill pod (llm-d-inference-scheduler docs/disaggregation.md, "Request Lifecycle";
guides/pd-disaggregation/gaie-pd/values.yaml scores decode pods by ``queue-scorer``). The request then waits for
memory in that instance's own queue, FCFS: vLLM's decode scheduler admits remote-KV requests from its waiting queue
behind its preempted ones and stops at the first that does not fit (``Instance.reserve``), SGLang's
``DecodePreallocQueue.pop_preallocated`` pops FIFO. So a request bound to a full instance waits there though another
has room, and holds back none bound to another instance.

The choice (``DecodeQueues.rank``): fewest requests bound there and not finished (those it runs or queues, and those
bound to it whose KV it has not received yet: in prefill, waiting for its memory or in transfer), as llm-d's
``active-request-scorer`` counts a request from its routing to its response (llm-d-inference-scheduler
pkg/plugins/scorer/active_request.go) and round robin evens for like requests; then the least KV in use; then the
lowest index. A count, not the KV in use first: a burst's requests bound before any of their prefills ends would all
go to the one instance whose KV in use is least.

``pd.decode_router`` (``DECODE_ROUTERS``) names the rank: ``least-loaded``, the default, is the one above;
``prefix-aware`` ranks first the longest prefix of the prompt a decode instance holds in its HBM (the blocks it is
not sent: ``Instance.reserve``), then as ``least-loaded``, under the thresholds of kvsim's ``prefix-aware`` router
(``cluster.*``: as ``least-loaded`` where the candidates' loads are imbalanced or the best prefix covers no more than
``cluster.cache_threshold`` of the prompt).
References differ on the decode side: llm-d-inference-scheduler's sample PD config scores decode pods by
``prefix-cache-scorer`` (weight 2: matched blocks / prompt blocks) beside ``queue-scorer`` (weight 1)
(deploy/config/pd-epp-config.yaml; pkg/epp/framework/plugins/scheduling/scorer/prefix/plugin.go ``Score``), and
sgl-router's decode policy defaults to its main ``--policy``, ``cache_aware`` (sgl-router src/main.rs,
src/policies/registry.rs ``get_decode_policy``); llm-d's PD guide scores them by ``active-request-scorer`` alone
("pure decode is bound by concurrent in-flight requests": guides/pd-disaggregation/router/pd-disaggregation.values.yaml)
and NVIDIA Dynamo's router turns overlap scoring off for decode workers ("decode routing should not chase prefix
reuse": docs components/router/disaggregated-serving.md; its mocker's ``derive_decode_router_config`` sets
``overlap_score_weight`` to 0). The prefix-aware rank is lexicographic, not llm-d's weighted sum.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from sim.serving.prefix_match import usable_prefix_blocks

if TYPE_CHECKING:  # annotations only: the config's check of pd.decode_router imports this module, not the serving model
    from sim.serving.instance import Instance, Job
    from sim.serving.routers import CacheAwareThresholds



@dataclass
class DecodeQueue:
    """One decode instance's PD bookkeeping."""

    jobs: deque[Job] = field(default_factory=deque)  # prefilled, waiting for its memory (FCFS)
    bound: int = 0  # requests bound here that it has not been handed yet (in prefill, in ``jobs`` or in transfer)
    bound_blocks: int = 0  # their prompt blocks it has not reserved yet (in prefill or in ``jobs``)


class DecodeQueues:
    """Every decode instance's ``DecodeQueue``, by instance index (a cluster's are built as requests are bound)."""

    def __init__(self, block_size: int, router: str = "least-loaded", thresholds: CacheAwareThresholds | None = None):
        self.block_size = block_size
        self.queues: dict[int, DecodeQueue] = {}
        self.waiting = 0  # prefilled requests waiting in every queue (the time series' queued count)
        self._ranking = DECODE_ROUTERS[router]  # (a name the config's check took: pd.decode_router)
        self.thresholds = thresholds  # the prefix-aware router's thresholds (cluster.*; it needs them)

    def choose(self, candidates: Sequence[Instance], job: Job) -> Instance:
        """The decode instance of ``candidates`` ``job`` is bound to (``pd.decode_router``)."""
        return self._ranking(self, job, candidates)

    def of(self, inst: Instance) -> DecodeQueue:
        queue = self.queues.get(inst.index)
        if queue is None:
            queue = self.queues[inst.index] = DecodeQueue()
        return queue

    def rank(self, inst: Instance) -> tuple[int, float, int]:
        """A decode instance's standing for a new request, best least: requests bound there and not finished, then
        the fraction of its KV blocks in use, then its index."""
        queue = self.queues.get(inst.index)
        return inst.load + (queue.bound if queue is not None else 0), inst.kv_usage, inst.index

    def has_room(self, inst: Instance, job: Job) -> bool:
        """Whether ``inst``'s blocks not in use hold the blocks ``job``'s prompt would take there beside the prompts
        bound there and not yet reserved (counted whole): its blocks less those of its usable prefix there
        (``usable_prefix``) that running requests hold, shared (``Instance.reserve``: vLLM's ``allocate_slots`` takes a
        new block only past the hit; a cached block of the hit is among those not in use, and taking it uses one). An
        estimate at dispatch, as of now: a hybrid's other groups not counted."""
        queue = self.queues.get(inst.index)
        pool = inst.pool
        room = pool.total - pool.used - (queue.bound_blocks if queue is not None else 0)
        blocks = self._blocks(job)
        if blocks <= room:  # (room without a hit: no lookup)
            return True
        if blocks - usable_prefix_blocks(job.input_tokens, self.block_size) > room:  # (nor with the longest hit: no
            return False  # lookup; a full fleet's spill asks every rack's decode instances)
        hit = self.usable_prefix(inst, job)
        return blocks - hit + pool.count_fresh(job.prompt_ids[:hit]) <= room  # (no hit: blocks, found short)

    def usable_prefix(self, inst: Instance, job: Job) -> int:
        """The blocks of ``job``'s prompt that ``inst`` holds and would not be sent (``KVCacheManager.usable_prefix``):
        those still landing there for another request count, as they will have landed by the time this request's KV
        is sent, after its prefill (``receive``, as of then, skips any still landing)."""
        return inst.kv.usable_prefix(job.prompt_ids, job.input_tokens)

    def bind(self, inst: Instance, job: Job) -> None:
        queue = self.of(inst)
        queue.bound += 1
        queue.bound_blocks += self._blocks(job)

    def prefilled(self, inst: Instance, job: Job) -> None:
        """``job``'s prefill ended: it waits last in its decode instance's queue."""
        self.of(inst).jobs.append(job)
        self.waiting += 1

    def reserved(self, queue: DecodeQueue) -> Job:
        """The head of ``queue`` took its decode memory: it leaves the queue (its transfer starts)."""
        job = queue.jobs.popleft()
        queue.bound_blocks -= self._blocks(job)
        self.waiting -= 1
        return job

    def handed(self, inst: Instance) -> None:
        """A request bound to ``inst`` was handed to it (its KV arrived): its load counts it from now on."""
        self.queues[inst.index].bound -= 1

    def _blocks(self, job: Job) -> int:
        return -(-job.input_tokens // self.block_size)


def least_loaded(queues: DecodeQueues, job: Job, candidates: Sequence[Instance]) -> Instance:
    """Fewest requests bound and not finished, then the least KV in use, then the lowest index
    (``DecodeQueues.rank``)."""
    return min(candidates, key=queues.rank)


def prefix_aware(queues: DecodeQueues, job: Job, candidates: Sequence[Instance]) -> Instance:
    """The longest prefix of the prompt held in a decode instance's HBM that it can use (``DecodeQueues.usable_prefix``,
    as ``has_room`` counts it): the blocks it is not sent (capped at ``usable_prefix_blocks``: a block-aligned
    prompt's last block is computed again, so holding it saves nothing); then as ``least_loaded``; under the
    prefix-aware router's thresholds (``queues.thresholds``, SGLang's cache-aware rule, loads being requests bound
    and not finished): as ``least_loaded`` where loads are imbalanced or the best prefix covers no more than the
    cache threshold of the prompt, or a prefix every prompt shares would bind every request to the instances that
    first held it."""
    usable, rank = queues.usable_prefix, queues.rank
    return queues.thresholds.choose(candidates, queues._blocks(job), lambda inst: usable(inst, job), rank,
                                    lambda: least_loaded(queues, job, candidates), load=lambda inst: rank(inst)[0])


# pd.decode_router: how a PD request's decode instance is chosen at dispatch (--pd, --cluster --pd)
DECODE_ROUTERS: dict[str, Callable[[DecodeQueues, Job, Sequence[Instance]], Instance]] = {
    "least-loaded": least_loaded,
    "prefix-aware": prefix_aware,
}
