"""Every library module stays at most 500 lines (issue 13: files that do one job)."""

from pathlib import Path

import im2hands

MAX_LINES = 500


def test_no_library_file_over_500_lines():
    root = Path(im2hands.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 50  # the package was found
    too_long = {str(p.relative_to(root)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not too_long, f"over {MAX_LINES} lines: {too_long}"
