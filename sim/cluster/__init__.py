"""Cluster mode: racks of GPU nodes, rack-shared EIC pools, a global prefix index and
hierarchical routing (the cluster issue builds it)."""
