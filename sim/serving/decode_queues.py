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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sim.serving.instance import Instance, Job


@dataclass
class DecodeQueue:
    """One decode instance's PD bookkeeping."""

    jobs: deque[Job] = field(default_factory=deque)  # prefilled, waiting for its memory (FCFS)
    bound: int = 0  # requests bound here that it has not been handed yet (in prefill, in ``jobs`` or in transfer)
    bound_blocks: int = 0  # their prompt blocks it has not reserved yet (in prefill or in ``jobs``)


class DecodeQueues:
    """Every decode instance's ``DecodeQueue``, by instance index (a cluster's are built as requests are bound)."""

    def __init__(self, block_size: int):
        self.block_size = block_size
        self.queues: dict[int, DecodeQueue] = {}
        self.waiting = 0  # prefilled requests waiting in every queue (the time series' queued count)

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
        """Whether ``inst``'s blocks not in use hold ``job``'s prompt beside the prompts bound there and not yet
        reserved (an estimate at dispatch: its prefix hits there and a hybrid's other groups not counted)."""
        queue = self.queues.get(inst.index)
        pool = inst.pool
        return pool.total - pool.used - (queue.bound_blocks if queue is not None else 0) >= self._blocks(job)

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
