"""Results: per-request serving metrics, the report document (JSON/CSV) and plots."""
