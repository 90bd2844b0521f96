"""Cluster routers: the registry's names (``sim.serving.routers.ROUTERS``) run hierarchically.

Each picks a rack, then a node, then an instance (or goes straight to the instances that hold
the prompt's prefix, found through the prefix index), so a decision costs O(racks + nodes per
rack + instances per node + chain length), never O(instances). Loads are requests routed to an
instance and not yet done with it (a unified instance: finished; a prefill instance: prefilled).

- ``round-robin``: request k goes to rack k mod R, then the rack's next front instance in turn.
- ``least-loaded``: least-loaded rack, then node in it, then instance in it (ties: the fewest prompt tokens routed
  there, then round robin from the last one routed to: ``ClusterRouter``).
- ``session-affinity``: the session id hashed to an instance, so a conversation's turns meet
  their own KV; a request without a session id (the trace has none) goes to the least loaded.
- ``prefix-aware``: SGLang's cache-aware router (sgl-router ``CacheAwarePolicy``). The router
  keeps its own approximate record of which instance it last sent each block to (SGLang: a
  radix tree of routed requests per worker); a prompt's match is its longest recorded prefix,
  owned by the instance of its deepest block. If loads are imbalanced (max - min >
  ``cluster.balance_abs_threshold`` and max > ``cluster.balance_rel_threshold`` x min, over
  the front instances) it takes the least loaded; else the match's instance if the matched
  fraction exceeds ``cluster.cache_threshold``; else the least loaded (SGLang: the worker with
  the smallest tree, i.e. the most free cache; the least loaded stands in for it). A Gated DeltaNet hybrid's
  prompt is matched the same way: the record is of where blocks were routed, as sgl-router's tree is of request
  text, and knows nothing of which states an instance cached (a match may be longer than the hit it is served).
- ``precise-prefix``: Mooncake's conductor, over the true contents of every tier: for each
  instance that holds the prefix in its HBM (cached, or in use by a running request: vLLM's prefix-cache map keeps a
  block in use, so KV-event routers see it; ``sim.cluster.in_use``), the least-loaded instance of each node whose
  DRAM/SSD holds it and of each rack whose EIC holds it, and the least-loaded instance, an
  estimated TTFT = (queued prompt tokens + the prompt's tokens past the prefix reachable
  there) / prefill rate + the time to fetch that prefix's blocks not in its HBM (each from
  its cheapest holder, one transfer per holder: the path's hops' latencies summed, once, plus its bytes over
  the path's narrowest link); a prefix is reachable up to
  its first block held only in other instances' HBM (a Gated DeltaNet hybrid's, over the true contents too, only
  up to the deepest block whose every state group's state it can reach as well, those states fetched with it:
  ``PrefixFetch._state_reach``). The smallest wins (ties: fewer queued tokens, then ``ClusterRouter``'s tie-break:
  the fewest prompt tokens routed there, then round robin from the last instance routed to), among the candidates
  whose KV memory can take the prompt beside the prompts queued there (``ClusterRun.kv_short``; all, if none can):
  the estimate counts queued prompt work only, and an instance whose running requests hold its memory keeps a
  request waiting however short its queue (Mooncake's conductor passes over an instance whose load breaks the SLO;
  llm-d weighs KV-cache utilization beside its precise prefix scorer). Dynamo's cost (overlap weight x blocks to
  prefill + active blocks) was tried instead: it gave up most of the hits blocks in use bring and not the tail.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

import numpy as np

from sim.jit import flush_when_sources_change, njit
from sim.serving.routers import ROUTERS, CacheAwareThresholds, affinity_hash

if TYPE_CHECKING:
    from sim.cluster.run import ClusterRun


@njit(cache=True)
def least_of(base: int, local: np.ndarray, loads: np.ndarray, tokens: np.ndarray, last: int) -> int:
    """Of the ids ``base + local[k]`` (increasing), the least loaded (``loads``, indexed by id); ties: the fewest
    ``tokens`` routed, then the first id after ``last`` (wrapping round: the first of them). One compiled pass, the
    lexicographic minimum of (load, tokens, not after ``last``, id); -1 for no ids. Every level of a least-loaded pick
    (the racks, a rack's nodes, a node's instances) asks it: ~0.6 us a call, where numpy masks and Python lists cost
    ~14 us a pick of 160 racks, 8 nodes and 8 instances (measured on this project's 2-core machine)."""
    best, best_load, best_tokens, best_before = -1, 0, 0, True
    for k in range(len(local)):
        i = base + local[k]
        load, routed, before = loads[i], tokens[i], i <= last
        if (best < 0 or load < best_load or (load == best_load and (
                routed < best_tokens or (routed == best_tokens and best_before and not before)))):
            best, best_load, best_tokens, best_before = i, load, routed, before
    return best


def instance_id_dtype(num_instances: int) -> type:
    """The narrowest signed integer dtype holding every instance id (0 … ``num_instances`` - 1) and -1."""
    return np.int16 if num_instances - 1 <= np.iinfo(np.int16).max else np.int32


class ClusterRouter:
    """Base: the hierarchical least-loaded pick every router falls back to.

    Ties in load at each level (rack, node, instance) go to the one routed the fewest prompt tokens so far (sgl-router's
    ``CacheAwarePolicy`` sends a request it does not route by cache to ``Tree::get_smallest_tenant``, the worker whose
    tree of routed text is smallest), then to the first after the one last routed to in that scope, round robin (vLLM's
    ``DPLBAsyncMPClient.get_core_engine_for_request`` scans engines from a start index "to help with balancing when
    engines are empty"). Taking the lowest id sent nearly every request of a lightly loaded fleet to instance 0."""

    reads_in_use = False  # whether it asks the prefix index of HBM tiers (then blocks in use must be indexed)

    def __init__(self, run: "ClusterRun"):
        self.run = run
        self.decisions: dict[str, int] = {}
        topo = run.topo
        # the last rack routed to, per rack its last node (global id), per node its last instance
        self.last_rack = -1
        self.last_node = np.full(topo.num_racks, -1, dtype=np.int64)
        self.last_inst = np.full(topo.num_nodes, -1, dtype=np.int64)
        self.last_routed = -1  # the last instance routed to, anywhere (precise-prefix's candidates span the cluster)
        self.racks = np.arange(topo.num_racks, dtype=np.int64)  # (``least_of``'s ids of the racks)

    def _count(self, reason: str) -> None:
        self.decisions[reason] = self.decisions.get(reason, 0) + 1

    def routed(self, inst_id: int) -> None:
        """Record a request routed to ``inst_id`` (the round-robin tie-break's position in each scope)."""
        topo = self.run.topo
        rack, node = topo.rack_of(inst_id), topo.node_of(inst_id)
        self.last_rack = rack
        self.last_node[rack] = node
        self.last_inst[node] = inst_id
        self.last_routed = inst_id

    @staticmethod
    def _break_tie(tied: np.ndarray, tokens: np.ndarray, last: int) -> int:
        """Of ``tied`` (increasing ids, equal on the router's own cost; ``tokens``: each one's routed prompt tokens),
        the one routed the fewest tokens; ties: the first after ``last`` (wrapping round). Every router's tie-break."""
        if len(tied) > 1:
            tied = tied[tokens == tokens.min()]
        if len(tied) > 1:
            after = tied[tied > last]
            return int(after[0] if len(after) else tied[0])
        return int(tied[0])

    def least_loaded(self, rack: int | None = None) -> int:
        run, topo = self.run, self.run.topo
        if rack is None:
            rack = least_of(0, self.racks, run.rack_load, run.rack_tokens, self.last_rack)
        node = least_of(rack * topo.nodes_per_rack, run.front_nodes, run.node_load, run.node_tokens,
                        self.last_node[rack])
        return self.least_loaded_in_node(node)

    def least_loaded_in_node(self, node: int) -> int:
        run = self.run
        base, slots = run.front_slots_of_node(node)
        return least_of(base, slots, run.inst_load, run.inst_tokens, self.last_inst[node])

    def pick(self, keys: np.ndarray, rid: int, session: int) -> int:
        raise NotImplementedError


class RoundRobin(ClusterRouter):
    def __init__(self, run):
        super().__init__(run)
        self.turn = np.zeros(run.topo.num_racks, dtype=np.int64)
        self.k = 0

    def pick(self, keys, rid, session):
        topo, front = self.run.topo, self.run.front_slots
        rack = self.k % topo.num_racks
        self.k += 1
        slot = int(front[self.turn[rack] % len(front)])
        self.turn[rack] += 1
        return rack * topo.instances_per_rack + slot


class LeastLoaded(ClusterRouter):
    def pick(self, keys, rid, session):
        return self.least_loaded()


class SessionAffinity(ClusterRouter):
    def pick(self, keys, rid, session):
        topo, front = self.run.topo, self.run.front_slots
        if session < 0:
            self._count("no_session_least_loaded")
            return self.least_loaded()
        self._count("session")
        h = affinity_hash(session)
        return (h % topo.num_racks) * topo.instances_per_rack + int(front[(h // topo.num_racks) % len(front)])


class PrefixAware(ClusterRouter):
    def __init__(self, run):
        super().__init__(run)
        # instance each block was last routed to (-1: none), a cell per block id: int16 where every instance id fits
        # (a fleet of 10,240 GPUs: half the bytes of int32)
        self.owner = np.full(run.num_blocks, -1, dtype=instance_id_dtype(run.topo.num_instances))
        self.thresholds = CacheAwareThresholds.of(run.config.cluster)

    def pick(self, keys, rid, session):
        loads = self.run.load_range
        if self.thresholds.imbalanced(loads.max, loads.min):
            self._count("imbalance")
            choice = self.least_loaded()
        else:
            owners = self.owner[keys] if len(keys) else np.zeros(0, self.owner.dtype)
            misses = np.flatnonzero(owners < 0)
            matched = int(misses[0]) if len(misses) else len(owners)
            if matched and matched / len(keys) > self.thresholds.cache:
                self._count("cache")
                choice = int(owners[matched - 1])
            else:
                self._count("least_loaded")
                choice = self.least_loaded()
        if len(keys):
            self.owner[keys] = choice
        return choice


class PrecisePrefix(ClusterRouter):
    reads_in_use = True

    def pick(self, keys, rid, session):
        run = self.run
        found, offsets, tiers = run.holders(keys, run.all_tier_candidates())
        fallback = self.least_loaded()
        if not found:
            self._count("least_loaded")
            return fallback
        first = tiers[offsets[0]:offsets[1]]
        candidates = {fallback}
        for t in first.tolist():
            kind, rack, node, inst = run.tier_place(t)
            if inst >= 0:
                if run.is_front(inst):
                    candidates.add(inst)
            elif node >= 0:
                if len(run.front_ids_of_node(node)):
                    candidates.add(self.least_loaded_in_node(node))
            else:
                candidates.add(self.least_loaded(rack))
        prompt_tokens = int(run.trace.input_tokens[rid])
        ids = np.array(sorted(candidates), dtype=np.int64)
        costs = [(run.kv_short(c, keys, prompt_tokens), run.estimated_ttft_s(c, offsets, tiers, prompt_tokens, keys),
                  int(run.queued_tokens[c])) for c in ids.tolist()]
        low = min(costs)
        tied = ids[np.array([cost == low for cost in costs])]
        best = self._break_tie(tied, run.inst_tokens[tied], self.last_routed)
        self._count("least_loaded" if best == fallback else "prefix")
        return best


CLUSTER_ROUTERS: dict[str, Callable[["ClusterRun"], ClusterRouter]] = {
    "round-robin": RoundRobin,
    "least-loaded": LeastLoaded,
    "session-affinity": SessionAffinity,
    "prefix-aware": PrefixAware,
    "precise-prefix": PrecisePrefix,
}
assert set(CLUSTER_ROUTERS) == set(ROUTERS), "every router name runs in every mode"


flush_when_sources_change(sys.modules[__name__], [])
