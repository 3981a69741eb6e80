"""The console's pages as HTML: each function takes what was read and returns the page body.

Everything that came from a message, a header, a key or another process goes through ``esc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from beacon.console.conversations import Step
from beacon.console.html import error_box, esc, href, path_part, table
from beacon.console.overview import Health
from beacon.console.records import Record, Window, pretty
from beacon.console.registry import Subject
from beacon.ops.deadletters import DeadLetter, Decoded, summary
from beacon.ops.lag import PartitionLag


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if value else ""


def login(problem: str | None, next_path: str) -> str:
    return (
        (error_box(problem) if problem else "")
        + '<form method="post" action="/login" class="box"><label>Operator token '
        '<input type="password" name="token" autocomplete="current-password" autofocus required></label> '
        f'<input type="hidden" name="next" value="{esc(next_path)}"><button type="submit">Log in</button></form>'
        '<p class="muted">The token is BEACON_CONSOLE_TOKEN; <code>beacon console</code> prints a login link when it '
        "generates one.</p>"
    )


def overview(checks: list[Health], from_card: bool, chart: str, chart_problem: str | None,
             lag_rows: list[PartitionLag], lag_problems: list[str], waiting: int | None, dlq_topic: str) -> str:
    rows = [
        (esc(h.name), f'<span class="{"ok" if h.healthy else "bad"}">{"up" if h.healthy else "down"}</span>',
         esc(h.detail), esc(h.url), esc(h.pid or ""))
        for h in checks
    ]
    source = ("from the running stack's card (dev-stack.json)" if from_card
              else "no `beacon dev` stack card: the configured API and WhatsApp gateway")
    lag = [(r.group, r.topic, str(r.partition), "" if r.committed is None else str(r.committed), str(r.high),
            str(r.lag)) for r in lag_rows]
    dlq = (f'<p><a href="/deadletters">{waiting} record(s)</a> on {esc(dlq_topic)}</p>' if waiting is not None
           else error_box(f"cannot read {dlq_topic}"))
    return (
        f'<h2>Processes</h2><p class="muted">{esc(source)}</p>'
        + table(["process", "health", "answer", "health check", "pid"], rows, raw=True, empty="no process known")
        + "<h2>Messages per second</h2>"
        + (error_box(f"chart paused: {chart_problem}") if chart_problem else "")
        + f'<div id="chart" data-refresh="/overview/chart">{chart}</div>'
        + '<p class="muted"><span style="color:#1a73e8">in</span>: records produced to the inbound topic; '
        '<span style="color:#137333">out</span>: to the outbound topic.</p>'
        + "<h2>Dead letters waiting</h2>" + dlq
        + "<h2>Lag per consumer group and partition</h2>"
        + "".join(error_box(p) for p in lag_problems)
        + table(["group", "topic", "partition", "committed", "end", "lag"], lag, empty="no committed offsets yet")
    )


def conversations_search(query: str, users: list[dict[str, Any]] | None, problem: str | None) -> str:
    form = ('<form method="get" action="/conversations" class="box"><label>User key or text '
            f'<input name="q" value="{esc(query)}" size="50"></label> <button type="submit">Find</button></form>')
    if problem:
        return form + error_box(problem)
    if users is None:
        return form
    rows = [(f'<a href="/conversations/{esc(path_part(u["user_key"]))}">{esc(u["user_key"])}</a>',
             esc(u.get("profile_name")), esc(u.get("last_seen")), "yes" if u.get("window_open") else "no",
             esc(f'{u["handoff"]} ({u.get("handoff_by") or "?"})' if u.get("handoff") else "bot"))
            for u in users]
    return form + table(["user key", "profile", "last seen", "window open", "answered by"], rows, raw=True,
                        empty=f"no user matches {query!r}")


def handoff_box(user_key: str, user: dict[str, Any] | None, csrf: str) -> str:
    """Who answers the user now, with "Take over" / "Hand back" and, while an operator has it, a reply box."""
    if user is None:
        return ""
    state = user.get("handoff")
    hidden = (f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
              f'<input type="hidden" name="user_key" value="{esc(user_key)}">')
    if state is None:
        status = "The bot answers this user."
        action = ('<form method="post" action="/conversations/handoff" class="inline">' + hidden
                  + '<input type="hidden" name="action" value="take">'
                  '<label>Operator <input name="operator" value="operator" size="12" required></label> '
                  '<label>Reason <input name="reason" size="24"></label> '
                  '<button type="submit" id="take-over">Take over</button></form>')
    else:
        who = esc(user.get("handoff_by") or "?")
        why = f": {esc(user['handoff_reason'])}" if user.get("handoff_reason") else ""
        status = f"A person answers this user: <b>{esc(state)}</b> (by {who}{why}); the bot is silent."
        action = ('<form method="post" action="/conversations/handoff" class="inline">' + hidden
                  + '<input type="hidden" name="action" value="back">'
                  f'<input type="hidden" name="operator" value="{who}">'
                  '<button type="submit" id="hand-back">Hand back</button></form>')
    reply = ""
    if state is not None:
        reply = ('<form method="post" action="/conversations/send">' + hidden
                 + '<label>Reply as the operator<br><textarea name="text" rows="3" cols="60" required '
                 'id="operator-text"></textarea></label><br><button type="submit" id="operator-send">Send</button>'
                 '</form>')
    return f'<div class="box" id="handoff"><p>{status}</p>{action}{reply}</div>'


def timeline(user_key: str, steps: list[Step], control: str = "") -> str:
    rows = []
    for s in steps:
        m = s.message
        content = m.text if m.text is not None else (m.status or m.kind)
        hops = "<br>".join(f"{esc(name)}: {seconds * 1000:.0f} ms" for name, seconds in s.hops)
        rows.append((esc(_when(m.created_at)), esc(m.direction), esc(m.kind), f"<pre>{esc(content)}</pre>",
                     esc(s.delivery_status or ""), hops, f'<code title="{esc(m.id)}">{esc(m.id[:12])}</code>'))
    topic_link = href("/topics", topic="in", key=user_key)
    return (f'<p>User <code>{esc(user_key)}</code> · <a href="{topic_link}">its records on the inbound topic</a></p>'
            + control
            + '<p class="muted">Hops: channel → gateway from the channel\'s own timestamp (whole seconds on WhatsApp), '
            "inbound → reply from the inbound message's arrival to the reply's creation (worker and API), reply → "
            "status from the reply's creation to its latest delivery status.</p>"
            + table(["time (UTC)", "direction", "kind", "content", "delivery", "hops", "id"], rows, raw=True,
                    empty="no messages stored for this user"))


def topics(topic_names: Sequence[tuple[str, str]], chosen: str, wins: list[Window], records: list[Record],
           partition: int | None, offset: int | None, key: str | None, versions: dict[int, list[str]]) -> str:
    options = "".join(f'<option value="{esc(code)}"{" selected" if code == chosen else ""}>{esc(name)}</option>'
                      for code, name in topic_names)
    parts = '<option value="">all</option>' + "".join(
        f'<option value="{w.partition}"{" selected" if w.partition == partition else ""}>{w.partition}</option>'
        for w in wins)
    form = (
        '<form method="get" action="/topics" class="box">'
        f'<label>Topic <select name="topic">{options}</select></label> '
        f'<label>Partition <select name="partition">{parts}</select></label> '
        f'<label>From offset <input name="offset" size="8" value="{esc("" if offset is None else offset)}"></label> '
        f'<label>User key <input name="key" size="40" value="{esc(key or "")}"></label> '
        '<button type="submit">Show</button></form>'
    )
    win_rows = [(f'<a href="{href("/topics", topic=chosen, partition=w.partition)}">{w.partition}</a>',
                 str(w.low), str(w.high), str(w.high - w.low)) for w in wins]
    rec_rows = []
    for r in records:
        schema = "" if r.schema_id is None else f"id {r.schema_id}"
        if r.schema_id is not None and r.schema_id in versions:
            schema += " (" + ", ".join(versions[r.schema_id]) + ")"
        value = (f'<pre class="record">{esc(pretty(r.value))}</pre>' if r.value is not None
                 else error_box(r.problem or ""))
        headers = "<br>".join(f"<code>{esc(k)}</code>: {esc(v)}" for k, v in r.headers)
        rec_rows.append((f"{r.partition}:{r.offset}", esc(_when(r.timestamp)), f"<code>{esc(r.key)}</code>",
                         esc(schema), headers, value))
    return (
        form + "<h2>Partitions</h2>"
        + table(["partition", "first offset", "end offset", "records"], win_rows, raw=True)
        + f"<h2>Records ({len(records)})</h2>"
        + table(["partition:offset", "time (UTC)", "key", "schema", "headers", "value"], rec_rows, raw=True,
                empty="no records in this range")
    )


def dead_letters(letters: list[tuple[DeadLetter, Decoded]], csrf: str) -> str:
    rows = []
    for d, decoded in letters:
        info = d.info
        source = f"{info.topic}[{info.partition}]@{info.offset}" if info else "(no dead-letter headers)"
        reason = f"{info.error_class}: {info.error_text}" if info else ""
        rows.append((
            f'<input type="checkbox" name="ref" value="{esc(d.ref)}" aria-label="select {esc(d.ref)}">',
            esc(d.ref), esc(source), f"<pre>{esc(reason)}</pre>", esc(info.attempts if info else ""),
            esc(info.origin if info else ""), esc(_when(info.time) if info else ""), esc(summary(decoded, 80)),
        ))
    if not rows:
        return '<p class="muted">The dead-letter topic is empty.</p>'
    return (
        '<form method="post" action="/deadletters/redrive">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        + table(["", "record", "source", "reason", "attempts", "given up by", "when (UTC)", "content"], rows,
                raw=True)
        + '<button type="submit">Redrive selected…</button></form>'
    )


def confirm_redrive(letters: list[DeadLetter], csrf: str) -> str:
    items = "".join(
        f'<li><code>{esc(d.ref)}</code> → {esc(d.info.topic if d.info else "(no source: will be skipped)")}'
        f'<input type="hidden" name="ref" value="{esc(d.ref)}"></li>' for d in letters)
    return (
        f"<p>Republish these {len(letters)} record(s) to their source topic? The workers or gateways will process "
        "them like new messages.</p>"
        f'<form method="post" action="/deadletters/redrive"><ul>{items}</ul>'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}"><input type="hidden" name="confirm" value="yes">'
        '<button type="submit">Yes, redrive</button> <a href="/deadletters">Cancel</a></form>'
    )


def redrive_result(sent: int, problems: list[str]) -> str:
    return (f'<p role="status">Redriven: {sent} record(s).</p>' + "".join(error_box(p) for p in problems)
            + '<p><a href="/deadletters">Back to the dead letters</a></p>')


def schemas(found: list[Subject]) -> str:
    out = []
    for s in found:
        rows = [(str(v.version), str(v.schema_id)) for v in s.versions]
        out.append(f"<h2>{esc(s.name)}</h2><p>Compatibility: <strong>{esc(s.compatibility or 'unknown')}</strong></p>"
                   + (error_box(s.problem) if s.problem else table(["version", "schema id"], rows)))
    return "".join(out) or '<p class="muted">no subjects</p>'
