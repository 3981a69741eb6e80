"""Prometheus metrics of the API layer (one set per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROCESSED = Counter("beacon_api_processed_total", "Messages the processing endpoint handled.", ["direction", "result"])
HANDLED = Counter("beacon_api_handled_total", "Inbound messages answered, by pipeline handler.", ["handler"])
REFUSED = Counter("beacon_api_window_refused_total", "Replies refused outside the customer-service window.")
PROCESS_SECONDS = Histogram(
    "beacon_api_process_seconds",
    "Time to process one message (pipeline and database).",
    ["direction"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LLM_CALLS = Counter("beacon_api_llm_calls_total", "Chat-completion calls of the agent.", ["result"])
TOOL_CALLS = Counter("beacon_api_tool_calls_total", "Tool calls the agent ran.", ["tool", "result"])
HOOK_CALLS = Counter("beacon_api_hook_calls_total", "Calls of the external pipeline hook.", ["result"])
PROACTIVE = Counter("beacon_api_proactive_total", "Proactive messages sent to bm_out.", ["result"])
HANDOFF_WAITING = Gauge(
    "beacon_api_handoff_waiting",
    "Conversations waiting for a human: handed off by the user (/human) or the bot, no operator has taken them yet "
    "(from the database, so every API process reports the same count).",
)
SQLITE_LOOP_CALLS = Histogram(
    "beacon_api_sqlite_loop_call_seconds",
    "SQLite statements, commits and rollbacks run on the event loop (BEACON_DB_SQLITE_ON_LOOP), by how long each "
    "took: the loop answers nothing meanwhile.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
SQLITE_THREAD_CALLS = Counter(
    "beacon_api_sqlite_thread_calls_total",
    "SQLite calls sent to aiosqlite's thread: every call with BEACON_DB_SQLITE_ON_LOOP off, else the waits for a "
    "lock, the calls queued behind one, connects and closes.",
)
SQLITE_LOCK_WAITS = Counter(
    "beacon_api_sqlite_lock_waits_total",
    "SQLite calls that found the database locked by another connection and waited for it on aiosqlite's thread "
    "(up to BEACON_DB_SQLITE_BUSY_TIMEOUT) instead of on the event loop.",
)
