"""The import table of docs/architecture.md is computed from the source and kept current."""

from pathlib import Path

from im2hands.utils import import_table

REPO = Path(__file__).resolve().parents[2]


def test_architecture_doc_table_is_current():
    assert import_table.main(["--check", str(REPO / "docs" / "architecture.md")]) == 0


def test_module_level_and_lazy_imports_are_told_apart(tmp_path, monkeypatch):
    pkg = tmp_path / "im2hands"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("import im2hands.b\nfrom im2hands.c import thing\n\ndef f():\n    from im2hands import d\n    import im2hands.b\n")
    (pkg / "b.py").write_text("")
    (pkg / "c.py").write_text("from . import b\n")
    (pkg / "d.py").write_text("")
    monkeypatch.setattr(import_table, "PACKAGE", pkg)
    graph = import_table.import_graph(pkg)
    assert graph["a"] == {"module": {"b", "c"}, "lazy": {"d"}}  # b also lazily: listed once, at module level
    assert graph["c"] == {"module": {"b"}, "lazy": set()}  # a relative import
    assert graph["b"] == {"module": set(), "lazy": set()}
    text = import_table.table(pkg)
    assert "| `im2hands/a/` | b, c | d |" in text and "| `im2hands/c.py` | b | – |" in text
    doc = tmp_path / "doc.md"
    doc.write_text(f"x\n{import_table.BEGIN}\nold\n{import_table.END}\ny\n")
    assert import_table.main(["--check", str(doc)]) == 1
    assert import_table.main(["--write", str(doc)]) == 0 and import_table.main(["--check", str(doc)]) == 0
