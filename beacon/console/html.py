"""HTML building blocks of the console: every piece of text goes through :func:`esc`.

Messages, keys and headers come from users and other systems: they are untrusted and always
rendered as text. Only the fixed markup of this module and the pages is emitted unescaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote, urlencode

NAV = (("/", "Overview"), ("/conversations", "Conversations"), ("/topics", "Topics"),
       ("/deadletters", "Dead letters"), ("/schemas", "Schemas"))

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.4rem;align-items:center}
header a{color:#c9d4ff;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .brand{font-weight:700;color:#fff;margin-right:1rem}
main{padding:1rem 1.4rem;max-width:1300px}
table{border-collapse:collapse;background:#fff;margin:.4rem 0 1.2rem;font-size:.9rem}
th,td{border:1px solid #d8dce3;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#eef0f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.muted{color:#667085}.box{background:#fff;border:1px solid #d8dce3;padding:.8rem;margin:.4rem 0 1rem}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.8rem}
td pre.record{min-width:30rem}
form.inline{display:inline}input,select,button{font-size:.9rem;padding:.25rem .4rem}
button{cursor:pointer}.error{background:#fde8e6;border:1px solid #f3b8b2;padding:.6rem;margin:.4rem 0}
"""


def esc(value: object) -> str:
    """Text as HTML: ``<``, ``>``, ``&`` and quotes escaped; None shows as an empty string."""
    return "" if value is None else escape(str(value), quote=True)


def href(path: str, **params: object) -> str:
    """A link to a console path with query parameters (escaped for an attribute)."""
    query = urlencode({k: v for k, v in params.items() if v is not None and v != ""})
    return esc(f"{path}?{query}" if query else path)


def path_part(value: str) -> str:
    """A value placed in a URL path segment."""
    return quote(value, safe="")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, raw: bool = False, empty: str = "none") -> str:
    """A table; cells are escaped unless ``raw`` (then the caller built them from escaped parts)."""
    body = ["<tr>" + "".join(f"<td>{cell if raw else esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str, *, active: str = "", logged_in: bool = True, script_src: str = "") -> str:
    """A whole console page around ``body`` (already HTML)."""
    nav = ""
    if logged_in:
        links = "".join(f'<a href="{p}"{" class=on" if p == active else ""}>{esc(n)}</a>' for p, n in NAV)
        nav = links + '<form class="inline" method="post" action="/logout" style="margin-left:auto">' \
            '<button type="submit">Log out</button></form>'
    js = f'<script src="{esc(script_src)}"></script>' if script_src else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · Beacon console</title>'
        f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body><header>'
        f'<span class="brand">Beacon console</span>{nav}</header><main><h1>{esc(title)}</h1>{body}</main>{js}'
        "</body></html>"
    )


def error_box(text: str) -> str:
    return f'<div class="error" role="alert">{esc(text)}</div>'
