"""The import table of ``docs/architecture.md``, computed from the source.

``python -m im2hands.utils.import_table`` prints, for every part of the package (a subpackage
such as ``im2hands/models/`` or a top-level module such as ``im2hands/loading.py``), the other
parts it imports: at module level, and only inside functions (lazy imports, run when the
function is called). ``--check FILE`` exits non-zero when the table between the markers
:data:`BEGIN` and :data:`END` in ``FILE`` differs from the computed one; ``--write FILE``
replaces it. The table is read from the source with :mod:`ast` (nothing is imported).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

__all__ = ["BEGIN", "END", "import_graph", "table", "main"]

PACKAGE = Path(__file__).resolve().parents[1]
BEGIN = "<!-- import-table:begin (python -m im2hands.utils.import_table --write docs/architecture.md) -->"
END = "<!-- import-table:end -->"


def _part(module: str) -> str | None:
    """``im2hands.models.init_occ`` -> ``models``; ``im2hands.loading`` -> ``loading``."""
    parts = module.split(".")
    if parts[0] != "im2hands" or len(parts) < 2:
        return None
    return parts[1]


def _is_part(part: str, package: Path) -> bool:
    return (package / part).is_dir() or (package / f"{part}.py").is_file()


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    names = list(rel.parts)
    if names[-1] == "__init__":
        names = names[:-1]
    return ".".join(names)


def import_graph(package: Path | None = None) -> dict[str, dict[str, set[str]]]:
    """part -> ``{"module": parts imported at module level, "lazy": parts imported only inside functions}``
    (``package``: the package folder; default: this installation's ``im2hands``)."""
    package = package or PACKAGE
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(package.rglob("*.py")):
        name = _module_name(path, package)
        me = _part(name)
        if me is None:
            continue
        entry = graph.setdefault(me, {"module": set(), "lazy": set()})
        tree = ast.parse(path.read_text(), filename=str(path))
        top = set(id(n) for n in tree.body)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = pkg[: len(pkg) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            kind = "module" if id(node) in top else "lazy"
            for t in targets:
                other = _part(t)
                if other is not None and other != me and _is_part(other, package):
                    entry[kind].add(other)
    for entry in graph.values():
        entry["lazy"] -= entry["module"]
    return graph


def _label(part: str, package: Path) -> str:
    return f"`im2hands/{part}/`" if (package / part).is_dir() else f"`im2hands/{part}.py`"


def table(package: Path | None = None) -> str:
    """The Markdown table: part | imports at module level | imports inside functions only."""
    package = package or PACKAGE
    graph = import_graph(package)
    rows = ["| part | imports (module level) | imports inside functions only |", "|---|---|---|"]
    for part in sorted(graph):
        mod = ", ".join(sorted(graph[part]["module"])) or "–"
        lazy = ", ".join(sorted(graph[part]["lazy"])) or "–"
        rows.append(f"| {_label(part, package)} | {mod} | {lazy} |")
    return "\n".join(rows) + "\n"


def _replace(text: str, new_table: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"the markers are missing: {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{new_table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", type=Path, help="exit 1 when FILE's table differs from the source")
    group.add_argument("--write", type=Path, help="rewrite the table in FILE")
    args = parser.parse_args(argv)
    new = table()
    if args.check is None and args.write is None:
        sys.stdout.write(new)
        return 0
    path = args.check or args.write
    text = path.read_text()
    updated = _replace(text, new)
    if args.check is not None:
        if updated != text:
            print(f"{path}: the import table is out of date; run python -m im2hands.utils.import_table --write {path}")
            return 1
        return 0
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(updated)
    tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
