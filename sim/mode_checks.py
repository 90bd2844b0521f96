"""What each mode reads of a resolved config, checked before the trace loads (``check_mode_settings``): the
command line's one run, and each point of a sweep or a plan."""

from __future__ import annotations

from sim.config import Config
from sim.mode_settings import SERVING


def check_mode_settings(mode: str, config: Config, policies: list[str], cluster_pd: bool = False,
                        fits: bool = True) -> None:
    """What of ``config`` the mode reads, checked before the trace loads: a learned model, the serving settings,
    the compute model's profile, a network table and (``fits``) whether the model and the instances fit their GPUs,
    node or fleet. The command line checks its one run; a sweep or a plan checks each point without ``fits``
    (``experiments.execute.check_point``): a point that does not fit fails alone and the others go on, as a
    sweep across sizes expects, while a mistake in the settings stops the sweep before it starts."""
    from sim.cache.access import learned_policy_asker
    from sim.serving.kv_groups import check_hybrid_manager

    if mode == "cache-only" or mode in SERVING:
        check_hybrid_manager(config, "pd" if cluster_pd else mode, policies)  # (--cluster --pd: PD's transfers)
    asker = learned_policy_asker(config, policies)
    if asker and (mode == "cache-only" or mode in SERVING):
        from sim.cache.access import load_learned_model

        load_learned_model(config, asker)  # the model and its sidecar are checked before the trace loads
    if mode in SERVING:
        from sim.serving.roles import check_roles, kv_link_read
        from sim.serving.run import check_serving_settings

        check_serving_settings(config)  # before the trace loads
        # (--cluster --pd: each role at its TP too)
        link_read = kv_link_read(config, mode, cluster_pd)  # a profile's files are read and checked:
        check_roles(config, mode == "pd" or cluster_pd, capacity=False, link_read=link_read)
    if mode in SERVING or (mode == "cache-only" and config.cache.capacity_blocks is None):  # HBM sized by config/GPU
        from sim.cache.tiers import check_lower_tiers, hbm_capacity_blocks
        from sim.serving.roles import front_role_config
        from sim.specs import gpu_spec

        if fits and mode in SERVING:  # at least one block: the weights fit (each PD role's at its TP), a GPU spec
            # file is read, before the trace
            check_roles(config, mode == "pd" or cluster_pd, compute=False, link_read=link_read)
            check_lower_tiers(front_role_config(config, mode == "pd" or cluster_pd))  # (the tiers store its blocks)
        elif fits:
            hbm_capacity_blocks(config)
            check_lower_tiers(config)
        elif config.serving.num_gpu_blocks is None and config.cache.tiers.hbm.capacity_gib == 0:
            gpu_spec(config.hardware.gpu)  # (a sweep point: only the file; a point that does not fit fails alone)
    if fits and mode == "single":
        from sim.config_rules import single_node_fits

        single_node_fits(config)
    if fits and mode == "pd":
        from sim.config_rules import pd_node_fits

        pd_node_fits(config)
    if fits and mode == "cluster":
        from sim.cluster.topology import Topology

        Topology.from_config(config, pd=cluster_pd)  # an impossible fleet is found before the trace loads
    if mode in ("pd", "cluster"):
        from sim.serving.network import network_model

        network_model(config.network)  # a network.lookup table is read and checked before the trace loads
