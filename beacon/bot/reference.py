"""The README's reference of ``Turn`` and ``BotUser``, generated from ``beacon/bot/turn.py`` (its
docstrings and annotations), so the documentation cannot drift from the code
(``tests/test_readme.py`` checks it). Members without a docstring are internal and left out.

    python -m beacon.bot.reference    # prints the block to paste between the README's TURN markers
"""

from __future__ import annotations

import ast
import inspect

from beacon.bot import turn

DOCUMENTED = ("Turn", "BotUser")


def _first_paragraph(doc: str) -> str:
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _string(node: ast.AST | None) -> str | None:
    """The text of a bare string statement (a docstring), else None."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return node.value.value
    return None


def _doc(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    return _string(node.body[0]) if node.body else None


def _rows(cls: ast.ClassDef) -> list[tuple[str, str, str, bool]]:
    """(member, type or signature, description, awaited) of each documented public member, in source order."""
    rows: list[tuple[str, str, str, bool]] = []
    body = cls.body
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            field_doc = _string(body[index + 1] if index + 1 < len(body) else None)
            if field_doc is not None:
                rows.append((node.target.id, ast.unparse(node.annotation), _first_paragraph(field_doc), False))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            doc = _doc(node)
            if doc is None:
                continue
            returns = ast.unparse(node.returns) if node.returns else "None"
            if any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list):
                rows.append((node.name, returns, _first_paragraph(doc), False))
                continue
            args = ast.unparse(node.args).removeprefix("self, ").removeprefix("self")
            awaited = isinstance(node, ast.AsyncFunctionDef)
            rows.append((f"{node.name}({args})", returns, _first_paragraph(doc), awaited))
    return rows


def _cell(text: str, *, code: bool = False) -> str:
    """Text made safe for a Markdown table cell (pipes escaped; ``rst`` literals as Markdown code)."""
    text = text.replace("``", "`").replace("|", "\\|")
    return f"`{text}`" if code else text


def turn_markdown() -> str:
    """The tables of ``Turn`` (``turn.…``) and ``BotUser`` (``turn.user.…``), as Markdown."""
    tree = ast.parse(inspect.getsource(turn))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    lines: list[str] = []
    for name, prefix in (("Turn", "turn"), ("BotUser", "turn.user")):
        if lines:
            lines.append("")
        lines += [f"| `{name}` member | type | what it is |", "|---|---|---|"]
        for member, kind, text, awaited in _rows(classes[name]):
            usage = f"{'await ' if awaited else ''}{prefix}.{member}"
            lines.append(f"| {_cell(usage, code=True)} | {_cell(kind, code=True)} | {_cell(text)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(turn_markdown())
