"""The fleet's shape: racks x nodes x GPUs, instances of a whole number of GPUs of one node.

Every rack is laid out alike. Its GPUs are numbered node by node; its instances take consecutive GPUs in slot
order, an instance of TP ``t`` starting at a multiple of ``t`` (of ``data_parallel_size x t`` at the start of a pool,
so a data-parallel group shares one node), so none straddles two nodes (``t`` divides ``gpus_per_node``). Outside
PD every slot is an instance of ``serving.tensor_parallel_size`` GPUs. In PD the first ``pd.num_prefill`` slots of
each rack are prefill instances at the prefill TP and the next ``pd.num_decode`` decode instances at the decode TP
(per rack, as the Contract says; a node may hold both roles); the rest of the rack is idle, and where both roles have
one size it is counted in idle slots of that size, as it always was (with one size this layout is the one before
roles had their own TPs).

Instance ids are dense: rack-major, then slot, so ``id = rack * instances_per_rack + slot``; slots run node by node
(``locate``: rack, node within the rack, slot within the node). Nodes have a global id ``rack * nodes_per_rack + node``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.config import MIN_GBPS, Config
from sim.config_rules import SERVING_TP, data_parallel_groups_fit, pd_tensor_parallel
from sim.errors import ConfigError

# The most instances a fleet may have. sim.cluster.run keeps three int64 arrays with one entry per instance (loads,
# queued and routed tokens), allocated before the first request: 24 bytes an instance, 240 MB here, a thousand times
# the prod-eval@cluster preset's 10,240 GPUs. The keys' own bounds allowed 100,000 racks x 1,024 nodes x 1,024 GPUs,
# ~1e11 instances, whose first array (781 GiB) was a MemoryError traceback (exit 1).
MAX_CLUSTER_INSTANCES = 10_000_000


@dataclass(frozen=True, slots=True)
class Topology:
    num_racks: int
    nodes_per_rack: int
    gpus_per_node: int
    tensor_parallel_size: int  # every instance's outside PD (and where a PD role's TP is 0)
    num_prefill: int = 0  # per rack; 0: not PD (every instance serves whole requests)
    num_decode: int = 0
    prefill_tensor_parallel_size: int = 0  # 0: tensor_parallel_size
    decode_tensor_parallel_size: int = 0
    data_parallel_size: int = 1
    # per rack-local slot: its node within the rack, and the first slot of each node (and one past the last)
    slot_node: np.ndarray = field(init=False, repr=False, compare=False)
    node_first_slot: np.ndarray = field(init=False, repr=False, compare=False)
    rack_gpus_used: int = field(init=False, repr=False, compare=False)  # one past the last GPU an instance takes
    # ``instances_per_rack`` and ``slot_node`` as Python ints: ``rack_of`` and ``node_of`` run ~10 times a request
    # routed (a property's len() and a numpy scalar's int() each time cost more than the arithmetic)
    _per_rack: int = field(init=False, repr=False, compare=False)
    _slot_nodes: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        gpus = self.gpus_per_node
        tps = [self.role_tp(p) for p in (True, False)] if self.pd else [self.tensor_parallel_size]
        pools = [(self.num_prefill, tps[0]), (self.num_decode, tps[1])] if self.pd else [
            (self.nodes_per_rack * gpus // tps[0], tps[0])]
        starts: list[int] = []
        gpu = 0
        for count, tp in pools:
            group = self.data_parallel_size * tp
            gpu = -(-gpu // group) * group  # a pool starts at a whole group's boundary
            starts += range(gpu, gpu + count * tp, tp)
            gpu += count * tp
        object.__setattr__(self, "rack_gpus_used", gpu)
        if self.pd and tps[0] == tps[1]:  # one size: the rest of the rack in idle slots of it
            starts += range(gpu, self.nodes_per_rack * gpus - tps[0] + 1, tps[0])
        slot_node = np.array(starts, dtype=np.int64) // gpus
        object.__setattr__(self, "slot_node", slot_node)
        object.__setattr__(self, "_per_rack", len(slot_node))
        object.__setattr__(self, "_slot_nodes", slot_node.tolist())
        object.__setattr__(self, "node_first_slot",
                           np.searchsorted(slot_node, np.arange(self.nodes_per_rack + 1), side="left"))

    @classmethod
    def from_config(cls, config: Config, pd: bool = False) -> "Topology":
        """The topology of ``config``; an impossible one is a ConfigError naming its keys."""
        gpus, tp = config.hardware.gpus_per_node, config.serving.tensor_parallel_size
        roles = pd_tensor_parallel(config) if pd else {"unified": (SERVING_TP, tp)}
        for key, role_tp in dict(roles.values()).items():
            if gpus % role_tp:
                raise ConfigError(f"config keys 'hardware.gpus_per_node'={gpus} and '{key}'={role_tp}: an instance is "
                                  f"tensor_parallel_size GPUs of one node, so TP must divide the node's GPUs")
        cluster = config.cluster
        if cluster.num_racks > 1 and cluster.uplink_gbps is None:  # (sim.cluster.run derives the racks' uplinks so)
            uplink = cluster.nodes_per_rack * config.network.bandwidth_gbps / cluster.oversubscription
            if uplink < MIN_GBPS:  # the domain a given cluster.uplink_gbps has: 1e12 gave 4e-10 Gb/s, with no word
                raise ConfigError(f"config key 'cluster.oversubscription'={cluster.oversubscription:g} leaves a rack's "
                                  f"uplink {uplink:.3g} Gb/s (cluster.nodes_per_rack x network.bandwidth_gbps / it), "
                                  f"below {MIN_GBPS:g} Gb/s; lower it or set cluster.uplink_gbps")
        dp = config.serving.data_parallel_size
        topo = cls(config.cluster.num_racks, config.cluster.nodes_per_rack, gpus, tp,
                   config.pd.num_prefill if pd else 0, config.pd.num_decode if pd else 0,
                   roles["prefill"][1] if pd else 0, roles["decode"][1] if pd else 0, dp)
        if topo.num_instances > MAX_CLUSTER_INSTANCES:
            sizes = (f"'cluster.num_racks'={cluster.num_racks} x 'cluster.nodes_per_rack'={cluster.nodes_per_rack} x "
                     f"'hardware.gpus_per_node'={gpus}")
            raise ConfigError(f"config keys {sizes} make {topo.num_instances:,} instances (or PD slots), more than the "
                              f"{MAX_CLUSTER_INSTANCES:,} kvsim simulates (its per-instance state is allocated up "
                              "front); make the fleet smaller")
        (p_key, p_tp), (d_key, d_tp) = (roles["prefill"], roles["decode"]) if pd else (roles["unified"],) * 2
        one_size = p_tp == d_tp
        # a group's instances share one node (its MoE exchange runs over the node's GPU link): the node's
        # instances of each size, and in PD each pool, split into whole groups
        per_node = ({f"instances per node (hardware.gpus_per_node / {p_key})": gpus // p_tp} if one_size and
                    p_key == SERVING_TP else {f"instances per node (hardware.gpus_per_node / {key})": gpus // t
                                              for key, t in dict(roles.values()).items()})
        data_parallel_groups_fit(config, {
            **per_node,
            **({"config key 'pd.num_prefill'": topo.num_prefill, "config key 'pd.num_decode'": topo.num_decode}
               if pd else {})})
        rack_gpus = topo.nodes_per_rack * gpus
        if pd and topo.rack_gpus_used > rack_gpus:
            if one_size and p_key == d_key == SERVING_TP:  # (one size: the message as it always was)
                raise ConfigError(
                    f"config keys 'pd.num_prefill'={topo.num_prefill} + 'pd.num_decode'={topo.num_decode} (per rack "
                    f"in cluster mode) exceed the rack's {rack_gpus // tp} instances (cluster.nodes_per_rack x "
                    f"hardware.gpus_per_node / serving.tensor_parallel_size)")
            raise ConfigError(
                f"config keys 'pd.num_prefill'={topo.num_prefill} x '{p_key}'={p_tp} + 'pd.num_decode'="
                f"{topo.num_decode} x '{d_key}'={d_tp} (per rack in cluster mode, each instance on one node, a pool "
                f"from a multiple of its TP) need {topo.rack_gpus_used} GPUs; a rack has {rack_gpus} "
                f"(cluster.nodes_per_rack x hardware.gpus_per_node)")
        return topo

    @property
    def pd(self) -> bool:
        return self.num_prefill > 0

    def role_tp(self, prefill: bool) -> int:
        """The TP of PD's prefill (``prefill``) or decode instances."""
        tp = self.prefill_tensor_parallel_size if prefill else self.decode_tensor_parallel_size
        return tp or self.tensor_parallel_size

    @property
    def instances_per_rack(self) -> int:
        return self._per_rack

    @property
    def pool_instances(self) -> int:
        """Instances that exist: outside PD every slot; in PD the racks' prefill and decode pools (the idle slots of a
        one-size layout are ids, no instances)."""
        return self.num_racks * (self.num_prefill + self.num_decode) if self.pd else self.num_instances

    @property
    def num_nodes(self) -> int:
        return self.num_racks * self.nodes_per_rack

    @property
    def num_instances(self) -> int:
        return self.num_racks * self.instances_per_rack

    @property
    def num_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    def instance_id(self, rack: int, node: int, slot: int) -> int:
        return rack * self.instances_per_rack + int(self.node_first_slot[node]) + slot

    def locate(self, instance: int) -> tuple[int, int, int]:
        """(rack, node within the rack, slot within the node) of an instance id."""
        rack, slot = divmod(instance, self.instances_per_rack)
        node = int(self.slot_node[slot])
        return rack, node, slot - int(self.node_first_slot[node])

    def node_of(self, instance: int) -> int:
        """Global node id of an instance."""
        rack, slot = divmod(instance, self._per_rack)
        return rack * self.nodes_per_rack + self._slot_nodes[slot]

    def rack_of(self, instance: int) -> int:
        return instance // self._per_rack

    def is_front(self, instance: int) -> bool:
        """Whether an instance takes new requests (all; PD: the prefill ones)."""
        return not self.pd or instance % self.instances_per_rack < self.num_prefill

    def front_slots(self) -> np.ndarray:
        """Rack-local instance indices that take new requests (all; PD: the prefill ones)."""
        return np.arange(self.num_prefill if self.pd else self.instances_per_rack, dtype=np.int64)

    def decode_slots(self) -> np.ndarray:
        """Rack-local instance indices of the decode pool (PD only)."""
        return np.arange(self.num_prefill, self.num_prefill + self.num_decode, dtype=np.int64)

    def nodes_of_slots(self, slots: np.ndarray) -> np.ndarray:
        """Rack-local node of each of ``slots`` (rack-local instance indices)."""
        return self.slot_node[slots]
