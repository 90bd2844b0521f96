"""The fleet's shape: racks x nodes x GPUs, instances of ``tensor_parallel_size`` GPUs of one node.

Instance ids are dense: rack-major, then node, then slot within the node, so
``id = (rack * nodes_per_rack + node) * instances_per_node + slot``. Nodes have a global id
``rack * nodes_per_rack + node``. In PD mode the first ``pd.num_prefill`` instance slots of
each rack are prefill instances and the next ``pd.num_decode`` decode instances (per rack, as
the Contract says); the rest of the rack is idle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import Config
from sim.config_rules import data_parallel_groups_fit
from sim.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Topology:
    num_racks: int
    nodes_per_rack: int
    gpus_per_node: int
    tensor_parallel_size: int
    num_prefill: int = 0  # per rack; 0: not PD (every instance serves whole requests)
    num_decode: int = 0

    @classmethod
    def from_config(cls, config: Config, pd: bool = False) -> "Topology":
        """The topology of ``config``; an impossible one is a ConfigError naming its keys."""
        gpus, tp = config.hardware.gpus_per_node, config.serving.tensor_parallel_size
        if gpus % tp:
            raise ConfigError(f"config keys 'hardware.gpus_per_node'={gpus} and 'serving.tensor_parallel_size'={tp}: "
                              f"an instance is tensor_parallel_size GPUs of one node, so TP must divide the node's GPUs")
        topo = cls(config.cluster.num_racks, config.cluster.nodes_per_rack, gpus, tp,
                   config.pd.num_prefill if pd else 0, config.pd.num_decode if pd else 0)
        # a group's instances share one node (its MoE exchange runs over the node's GPU link): the node's
        # instances, and in PD each pool, split into whole groups
        data_parallel_groups_fit(config, {
            "instances per node (hardware.gpus_per_node / serving.tensor_parallel_size)": topo.instances_per_node,
            **({"config key 'pd.num_prefill'": topo.num_prefill, "config key 'pd.num_decode'": topo.num_decode}
               if pd else {})})
        if pd and topo.num_prefill + topo.num_decode > topo.instances_per_rack:
            raise ConfigError(f"config keys 'pd.num_prefill'={topo.num_prefill} + 'pd.num_decode'={topo.num_decode} "
                              f"(per rack in cluster mode) exceed the rack's {topo.instances_per_rack} instances "
                              f"(cluster.nodes_per_rack x hardware.gpus_per_node / serving.tensor_parallel_size)")
        return topo

    @property
    def pd(self) -> bool:
        return self.num_prefill > 0

    @property
    def instances_per_node(self) -> int:
        return self.gpus_per_node // self.tensor_parallel_size

    @property
    def instances_per_rack(self) -> int:
        return self.nodes_per_rack * self.instances_per_node

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
        return (rack * self.nodes_per_rack + node) * self.instances_per_node + slot

    def locate(self, instance: int) -> tuple[int, int, int]:
        """(rack, node within the rack, slot within the node) of an instance id."""
        node_global, slot = divmod(instance, self.instances_per_node)
        rack, node = divmod(node_global, self.nodes_per_rack)
        return rack, node, slot

    def node_of(self, instance: int) -> int:
        """Global node id of an instance."""
        return instance // self.instances_per_node

    def rack_of(self, instance: int) -> int:
        return instance // self.instances_per_rack

    def front_slots(self) -> np.ndarray:
        """Rack-local instance indices that take new requests (all; PD: the prefill ones)."""
        return np.arange(self.num_prefill if self.pd else self.instances_per_rack, dtype=np.int64)

    def decode_slots(self) -> np.ndarray:
        """Rack-local instance indices of the decode pool (PD only)."""
        return np.arange(self.num_prefill, self.num_prefill + self.num_decode, dtype=np.int64)
