"""``python -m warmstart``: the same command as the ``warmstart`` console script."""

from warmstart.cli import main

__all__ = ()

if __name__ == "__main__":
    raise SystemExit(main())
