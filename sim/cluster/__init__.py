"""Cluster mode: racks of GPU nodes, rack-shared EIC pools, prefix fetch by location over shared links,
and hierarchical routing (``run.py`` builds the fleet lazily on the serving model)."""
