"""Alibaba Bailian's chat chains (``parent_chat_id``): which records are malformed for their chain, and the sessions
the chains make.

Each record names the chat it continues (``parent_chat_id``; -1 for a first turn: alibaba-edu/qwen-bailian-
usagetraces-anon README), so a record follows its parent's answer. The trace is a window of a service's traffic: a
parent absent from it came before its start (or past a limit).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from sim.errors import TraceError
from trace.arrow import numpy_view

LOG = logging.getLogger("kvsim.trace")


def children_before_parents(arrival: np.ndarray, chat: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Whether each record (file order) comes before every record of its parent chat in the replay's order (by
    arrival time, ties in file order): a turn sent before the one it continues is malformed (a wrong timestamp or
    parent id; every parent chain that loops holds one). A parent absent from the records is no sign of one."""
    n = len(arrival)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(arrival, kind="stable")] = np.arange(n)
    by_chat = np.lexsort((rank, chat))  # by chat id, each chat's records in replay order
    chats = chat[by_chat]
    first = np.ones(n, dtype=bool)
    first[1:] = chats[1:] != chats[:-1]
    ids, earliest = chats[first], rank[by_chat][first]  # each chat id and its first record's place
    at = np.searchsorted(ids, parent).clip(0, len(ids) - 1)
    found = (parent >= 0) & (ids[at] == parent)
    return found & (earliest[at] > rank)


def chat_sessions(path: Path, chat: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Dense session codes (order of first appearance) of records chained by their parent chat ids
    (-1: a first turn): a record's session is its first turn's chat id, found by pointer doubling; a
    parent not in the trace (before its start, or past a limit) roots a session of its own. A chain that
    loops is bad input (with the records that come before their parents dropped, ``children_before_parents``: a chat
    its own parent, or chat ids repeated)."""
    order = np.argsort(chat, kind="stable")
    repeats = np.flatnonzero(np.diff(chat[order]) == 0)
    if len(repeats):  # e.g. two traces, each counting chats from 0, in one file: sessions of both are merged
        LOG.warning("kvsim: note: %s: %s records repeat an earlier record's chat_id (e.g. %d): a first turn among them "
                    "shares that chat's session, and a child of that id follows its first record", path, f"{len(repeats):,}",
                    int(chat[order][repeats[0]]))
    at = np.searchsorted(chat[order], parent).clip(0, len(chat) - 1)
    found = (parent >= 0) & (chat[order][at] == parent)
    up = np.where(found, order[at], -1)  # the parent's record (its first, if chat ids repeat)
    root_label = np.where(parent >= 0, parent, chat)  # a record without a parent record: its own session
    for _ in range(64):
        step = up >= 0
        if not step.any():
            break
        nxt = np.where(step, up[np.where(step, up, 0)], -1)
        root_label = np.where(step, root_label[np.where(step, up, 0)], root_label)
        up = nxt
    else:  # 2^64 steps up from a record still stepping is past any tail into its loop (fewer than 2^63 records)
        looped = int(chat[up[np.flatnonzero(up >= 0)[0]]])
        raise TraceError(f"{path}: parent_chat_id chains loop (chat {looped} is its own ancestor), so sessions cannot "
                         "be told")
    codes = pa.array(root_label).dictionary_encode().indices
    return numpy_view(codes).astype(np.int64)
