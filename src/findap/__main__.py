"""`python -m findap`."""
from findap.cli import main

main()
