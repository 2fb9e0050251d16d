"""``python -m im2hands`` is the same as the ``im2hands`` command."""

from im2hands.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
