"""`python -m findap`: the `findap` command (findap.entry: the allocator choice, then the CLI)."""
from findap.entry import main

main()
