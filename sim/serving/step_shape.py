"""A step's batch as the compute models see it: ``StepShape`` aggregates (sums, extremes), so a step's cost is O(1)
whatever the batch size (``sim.serving.compute``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROW_BLOCK = 64  # query rows a chunk's tiles are counted in (attention kernels' tiles are 64 or 128 rows)
MAX_TILE_ROWS = 128  # the largest query tile of those kernels (sim.serving.attention_waves)


@dataclass(slots=True)
class StepShape:
    """Aggregates of one step's batch."""

    prefill_seqs: int = 0  # sequences computing a prefill chunk this step
    prefill_tokens: int = 0  # new prompt tokens computed this step (all chunks)
    prefill_pairs: float = 0.0  # Σ over chunks of n × (context + (n + 1) / 2): causal (query, key) pairs
    prefill_kv_tokens: int = 0  # Σ over chunks of (context + n): KV tokens read by prefill attention
    prefill_chunk_sq: float = 0.0  # Σ over chunks of n²: Vidur's aggregate of several prefills
    prefill_chunk_max: int = 0  # the longest chunk (its query rows: how FlashAttention 3 splits, varlen_attention)
    prefill_kv_max: int = 0  # the most keys one query tile of a chunk attends to (sim.serving.attention_waves)
    prefill_row_blocks: int = 0  # Σ over chunks of ceil(n / 64): the chunks' query tiles of 64 rows
    decode_seqs: int = 0  # sequences decoding one token
    decode_kv_tokens: int = 0  # Σ over decodes of their KV length (keys each new token attends to)
    decode_kv_max: int = 0  # longest decode KV length
    decode_kv_min: int = 0  # shortest decode KV length
    # A hybrid model's sliding-window layers (``ModelSpec.is_hybrid_attention``): their window (0: every layer attends
    # to its whole context), and the step as they see it, each query's keys cut to the window (``sliding``)
    window: int = 0
    sliding: StepShape | None = None
    # (in ``sliding`` of a decode window's first step) the steps each sequence below the window takes to fill it,
    # sorted: its windowed KV grows by one a step until then (``window_sliding_kv_tokens``)
    fill_steps: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.window and self.sliding is None:
            self.sliding = StepShape()

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    @property
    def logit_rows(self) -> int:
        """Sequences whose last token goes through the LM head and sampler: all scheduled ones."""
        return self.prefill_seqs + self.decode_seqs

    @property
    def prefill_context(self) -> int:
        """Σ over chunks of the KV history before the chunk."""
        return self.prefill_kv_tokens - self.prefill_tokens

    def add_prefill(self, chunk: int, context: int) -> None:
        self.prefill_seqs += 1
        self.prefill_tokens += chunk
        if chunk > self.prefill_chunk_max:
            self.prefill_chunk_max = chunk
        kv = context + chunk
        if kv > self.prefill_kv_max:
            self.prefill_kv_max = kv
        self.prefill_row_blocks += -(-chunk // ROW_BLOCK)
        self.prefill_pairs += chunk * (context + (chunk + 1) / 2)
        self.prefill_kv_tokens += kv
        self.prefill_chunk_sq += chunk * chunk
        if self.window:
            self.sliding.add_windowed_prefill(chunk, context, self.window)

    def add_windowed_prefill(self, chunk: int, context: int, window: int) -> None:
        """A prefill chunk as a sliding-window layer computes it: the query at position p (0-based) attends to keys
        max(0, p - window + 1) … p, so query j of the chunk (1-based) to min(context + j, window) keys, and the chunk
        reads the union of their windows, min(context + chunk, window - 1 + chunk) keys; a query tile of up to
        ``MAX_TILE_ROWS`` rows the union of its rows' windows."""
        self.prefill_seqs += 1
        self.prefill_tokens += chunk
        self.prefill_chunk_max = max(self.prefill_chunk_max, chunk)
        self.prefill_kv_max = max(self.prefill_kv_max, min(context + chunk, window - 1 + min(chunk, MAX_TILE_ROWS)))
        self.prefill_row_blocks += -(-chunk // ROW_BLOCK)
        below = min(chunk, max(0, window - context))  # queries whose window still reaches position 0
        self.prefill_pairs += below * (context + (below + 1) / 2) + (chunk - below) * window
        self.prefill_kv_tokens += min(context + chunk, window - 1 + chunk)
        self.prefill_chunk_sq += chunk * chunk

    def add_decode(self, kv_len: int) -> None:
        self.decode_kv_max = max(self.decode_kv_max, kv_len)
        self.decode_kv_min = kv_len if self.decode_seqs == 0 else min(self.decode_kv_min, kv_len)
        self.decode_seqs += 1
        self.decode_kv_tokens += kv_len
        if self.window:
            self.sliding.add_decode(min(kv_len, self.window))

    def add_decodes(self, seqs: int, kv_tokens: int, kv_max: int, kv_min: int, windowed: int) -> None:
        """``add_decode`` of ``seqs`` sequences at once, by the Σ, max and min of their KV lengths (``windowed``: Σ of
        them cut to the sliding window, when there is one)."""
        self.decode_kv_max = max(self.decode_kv_max, kv_max)
        self.decode_kv_min = kv_min if self.decode_seqs == 0 else min(self.decode_kv_min, kv_min)
        self.decode_seqs += seqs
        self.decode_kv_tokens += kv_tokens
        if self.window:
            window = self.window
            self.sliding.add_decodes(seqs, windowed, min(kv_max, window), min(kv_min, window), windowed)

    @classmethod
    def decode_batch(cls, kv_lens: np.ndarray, window: int = 0) -> "StepShape":
        """A decode-only step of sequences with these KV lengths (``window``: a hybrid model's sliding window, whose
        layers see each length cut to it; a decode window's later steps follow from ``fill_steps``)."""
        kv_lens = np.asarray(kv_lens, dtype=np.int64)
        shape = cls(decode_seqs=len(kv_lens), decode_kv_tokens=int(kv_lens.sum()),
                    decode_kv_max=int(kv_lens.max()), decode_kv_min=int(kv_lens.min()), window=window)
        if window:
            sliding = cls.decode_batch(np.minimum(kv_lens, window))
            fill = window - kv_lens
            sliding.fill_steps = np.sort(fill[fill > 0])
            shape.sliding = sliding
        return shape


_step_offsets = np.arange(4096, dtype=np.float64)  # 0, 1, 2, ...: a window's steps after its first (grown on demand)


def _window_steps(steps: int) -> np.ndarray:
    """0 … steps − 1 as floats (a view: windows are short and many, so the range is made once)."""
    global _step_offsets
    if steps > len(_step_offsets):
        _step_offsets = np.arange(max(steps, 2 * len(_step_offsets)), dtype=np.float64)
    return _step_offsets[:steps]


def window_kv_tokens(first: StepShape, steps: int) -> np.ndarray:
    """Σ decode KV length of each step of a decode window (whole numbers, as floats: exact below 2**53, and what
    the step-time arithmetic converts them to anyway)."""
    kv = _window_steps(steps) * first.decode_seqs
    kv += first.decode_kv_tokens
    return kv


def window_sliding_kv_tokens(first: StepShape, steps: int) -> np.ndarray:
    """Σ decode KV length of each step of a decode window as a hybrid model's sliding-window layers see it: a
    sequence's grows by one a step until it fills the window (``first.sliding.fill_steps``), then stays, so step k
    adds Σ min(k, fill) to the first step's."""
    sliding = first.sliding
    fill = sliding.fill_steps
    k = _window_steps(steps)
    kv = np.full(steps, float(sliding.decode_kv_tokens))
    if fill is not None and len(fill):
        filled = np.searchsorted(fill, k, side="right")  # sequences full by step k
        kv += np.concatenate(([0.0], np.cumsum(fill, dtype=np.float64)))[filled] + k * (len(fill) - filled)
    return kv


def window_kv(first: StepShape, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Σ, max and min decode KV length of each step of a decode window (as ``window_kv_tokens``, floats)."""
    k = _window_steps(steps)
    return window_kv_tokens(first, steps), first.decode_kv_max + k, first.decode_kv_min + k
