"""The chaos run: a steady load, one row per fault (calm, fault, drain, calm), then the account per row.

A row owns the messages offered during its time segment. Answered = acknowledged webhooks whose reply
the fake Cloud API recorded; lost = acknowledged, never answered by the end of the run (every row gets
the whole run's drain); dead-lettered = records added to ``bm_dlq`` during the row; drain = seconds from
the broken part answering again until every message offered before that moment was answered. The run
ends only when the workers' and the gateway's groups have committed everything and the fake's record
is read to its end, so a late duplicate cannot slip past the count.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from beacon.bench.chaos.faults import Fault, Window
from beacon.bench.chaos.load import Ledger, SteadyLoad
from beacon.bench.chaos.stack import ChaosStack, Say
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.kafka import committed_offsets, list_topic_offsets, topic_partitions

#: Counter the gateway keeps of sends it repeats after finding them marked "sending" at start.
POSSIBLE_DUPLICATES = "beacon_gateway_possible_duplicate_sends_total"


@dataclass
class Row:
    """One fault's figures."""

    fault: str
    seconds: float  # how long the broken part was away (kill: until it answered again)
    offered: int = 0
    acknowledged: int = 0
    answered: int = 0
    lost: int = 0
    duplicates: int = 0
    possible_duplicates: int = 0  # the physics bound the gateway reported (kill between send and record)
    order_violations: int = 0
    dead_lettered: int = 0
    drain_seconds: float | None = None
    note: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def clean(self) -> bool:
        """0 lost, 0 dead-lettered, 0 order violations, duplicates within what the gateway says it may repeat."""
        return (not self.lost and not self.dead_lettered and not self.order_violations
                and self.duplicates <= self.possible_duplicates and self.acknowledged == self.offered)


def dead_letters(settings: Settings) -> int:
    """Records in the dead-letter topic so far (sum of its partitions' end offsets)."""
    partitions = topic_partitions(settings, settings.topics.dlq)
    return sum(list_topic_offsets(settings, settings.topics.dlq, partitions, "latest").values())


def possible_duplicates(settings: Settings) -> int:
    """The gateway's count of possibly repeated sends since it started (0 when it does not answer)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{settings.whatsapp.gateway_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(POSSIBLE_DUPLICATES) and not line.startswith("#")))


def groups_caught_up(settings: Settings) -> bool:
    """True when the workers have committed all of bm_in and the gateway all of bm_out."""
    try:
        for group, topic in ((settings.workers.group, settings.topics.inbound),
                             (settings.whatsapp.gateway_group, settings.topics.outbound)):
            ends = list_topic_offsets(settings, topic, topic_partitions(settings, topic), "latest")
            done = committed_offsets(settings, group, topic)
            if any(end > (done.get((topic, p)) or 0) for p, end in ends.items()):
                return False
    except BeaconError:
        return False
    return True


async def _poll(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.2)
    return False


async def run_rows(stack: ChaosStack, faults: list[Fault], *, seconds: float, rate: float, users: int,
                   calm: float, drain_timeout: float, baseline: bool = True, hold: float | None = None,
                   say: Say = print) -> list[Row]:
    """Run the load, inject each fault in turn, and account for every message by row: first a row without
    a fault (``baseline``), then one per fault, each outage lasting ``seconds`` times its share (or ``hold``)."""
    s = stack.settings
    load = SteadyLoad(f"http://127.0.0.1:{s.whatsapp.gateway_port}", f"http://127.0.0.1:{s.local.fake_whatsapp_port}",
                      "dev-secret", s.whatsapp.phone_number_id, rate=rate, users=users)
    rows: list[Row] = []
    windows: dict[str, Window | None] = {}
    await load.start()
    try:
        # Warm-up, in no row of its own: the workers' first assignment takes a few seconds.
        await _poll(lambda: bool(load.ledger.replies) and load.drained_before(time.time() - 1), drain_timeout)
        for fault in [None, *faults] if baseline else faults:
            name = fault.name if fault else f"none (steady load, {stack.brokers} broker(s))"
            row = Row(name, 0.0, started_at=time.time())
            dlq_before = await asyncio.to_thread(dead_letters, s)
            dup_before = await asyncio.to_thread(possible_duplicates, s)
            await asyncio.sleep(calm)
            window: Window | None = None
            if fault is not None:
                outage = (hold if hold is not None else seconds * fault.share) if fault.share else 0.0
                say(f"{name}: injecting ({outage:.0f}s)" if outage else f"{name}: injecting")
                try:
                    window = await asyncio.to_thread(fault.inject, stack, outage)
                except BeaconError as exc:
                    row.note = f"not run: {exc}"
                    say(f"{name}: {row.note}")
                else:
                    row.seconds, row.note = window.seconds, window.note
            moment = window.restored_at if window else time.time()
            if await _poll(functools.partial(load.drained_before, moment), drain_timeout):
                replies = [load.ledger.first_reply(t) for t, o in load.ledger.offers.items() if o.offered_at <= moment]
                row.drain_seconds = max(0.0, max((r for r in replies if r is not None), default=moment) - moment)
            await asyncio.sleep(calm)
            row.ended_at = time.time()
            row.dead_lettered = await asyncio.to_thread(dead_letters, s) - dlq_before
            dup_after = await asyncio.to_thread(possible_duplicates, s)
            # A restarted gateway counts from 0; otherwise count the change.
            row.possible_duplicates = dup_after if fault and fault.name == "gateway-sigkill" else max(
                0, dup_after - dup_before)
            windows[name] = window
            rows.append(row)
            drain = "not drained" if row.drain_seconds is None else f"drained in {row.drain_seconds:.1f}s"
            say(f"{name}: {drain}, {row.dead_lettered} dead-lettered")
        await load.stop_offering(timeout=drain_timeout)
        await _poll(lambda: load.unanswered() == 0, drain_timeout)
        settled = await _poll(lambda: groups_caught_up(s), 60)
        while not await load.fake_caught_up():
            await asyncio.sleep(0.2)
        if not settled:
            say("warning: the workers or the gateway did not commit everything within 60 s; late duplicates "
                "would not be counted")
    finally:
        await load.close()
    account(load.ledger, rows)
    return rows


def _row_of(rows: list[Row], offered_at: float) -> Row:
    for row in reversed(rows):
        if offered_at >= row.started_at:
            return row
    return rows[0]


def account(ledger: Ledger, rows: list[Row]) -> None:
    """Give each row its figures from the ledger: offers by the time written, replies by token, order per user."""
    by_user: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for token, offer in ledger.offers.items():
        row = _row_of(rows, offer.offered_at)
        row.offered += 1
        got = ledger.replies.get(token) or []
        if offer.acked_at is not None:
            row.acknowledged += 1
            if got:
                row.answered += 1
            else:
                row.lost += 1
        row.duplicates += max(0, len(got) - 1)
        if got:
            by_user[offer.user].append((got[0].seq, offer.number, offer.offered_at))
    for replies in by_user.values():
        replies.sort()
        for (_, a, _), (_, b, at) in itertools.pairwise(replies):
            if b < a:
                _row_of(rows, at).order_violations += 1


def table(rows: list[Row]) -> str:
    head = ("| fault | duration s | offered | answered | lost | duplicate replies (bound) | order violations "
            "| dead-lettered | drain s |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        not_run = r.note.startswith("not run")
        drain = "-" if not_run else "not drained" if r.drain_seconds is None else f"{r.drain_seconds:.1f}"
        dups = f"{r.duplicates} ({r.possible_duplicates})" if r.possible_duplicates else str(r.duplicates)
        name = f"{r.fault} (not run)" if not_run else r.fault
        lines.append(f"| {name} | {r.seconds:.1f} | {r.offered:,} | {r.answered:,} | {r.lost} | {dups} | "
                     f"{r.order_violations} | {r.dead_lettered} | {drain} |")
    return "\n".join(lines)


def write(rows: list[Row], out: Path, meta: dict[str, object]) -> tuple[Path, Path]:
    """Write ``chaos.md`` and ``chaos.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "chaos.md", out / "chaos.json"
    notes = "\n".join(f"- {r.fault}: {r.note}" for r in rows if r.note)
    md.write_text(f"{table(rows)}\n\n{notes}\n")
    js.write_text(json.dumps({**meta, "rows": [{**asdict(r), "clean": r.clean} for r in rows]}, indent=2) + "\n")
    return md, js


async def bench(base: Settings, faults: list[Fault], *, seconds: float, rate: float, users: int, out: Path,
                database: str = "postgres", calm: float = 5.0, drain_timeout: float = 120.0,
                say: Say = print) -> list[Row]:
    """Start a stack of its own under ``out``, run every fault against it, write the table, stop the stack."""
    began = time.monotonic()
    rows: list[Row] = []
    # The faults of one broker run on a stack with one broker, the cluster's on a stack of three.
    for brokers, group in ((1, [f for f in faults if f.needs != "cluster"]),
                           (3, [f for f in faults if f.needs == "cluster"])):
        if not group:
            continue
        say(f"--- a stack on {brokers} broker(s) for: {', '.join(f.name for f in group)}")
        data = out / f"stack-{brokers}"
        shutil.rmtree(data, ignore_errors=True)  # a fresh stack every run: no topics, groups or schemas left over
        stack = ChaosStack.create(base, data, database=database, brokers=brokers, say=say)
        try:
            await asyncio.to_thread(stack.start, say)
            rows += await run_rows(stack, group, seconds=seconds, rate=rate, users=users, calm=calm,
                                   drain_timeout=drain_timeout, say=say)
        except BeaconError as exc:
            if brokers == 1:
                raise
            rows += [Row(f.name, 0.0, note=f"not run: {exc}") for f in group]
            say(f"{', '.join(f.name for f in group)}: not run: {exc}")
        finally:
            await asyncio.to_thread(stack.stop)
    meta = {"seconds": seconds, "rate": rate, "users": users, "database": database, "workers": 2,
            "run_seconds": round(time.monotonic() - began, 1)}
    write(rows, out, meta)
    return rows
