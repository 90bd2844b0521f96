"""The cache engine: block-id access helpers, eviction policies, tiers, the multi-tier
manager, miss-ratio curves and the cache-only replay (the policy study)."""
