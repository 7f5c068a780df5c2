"""The `findap` command: picks the host allocator (findap.allocator) before anything heavy is imported, then runs
the CLI. Kept apart from cli.py so the re-execution happens before typer, pydantic and torch are loaded."""
from __future__ import annotations


def main() -> None:
    import sys

    from findap.allocator import AllocatorUnavailable, reexec_on_preferred_allocator

    try:
        reexec_on_preferred_allocator()
    except AllocatorUnavailable as e:  # the CLI's error contract: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    from findap.cli import main as cli_main

    cli_main()
