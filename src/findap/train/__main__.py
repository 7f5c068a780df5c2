"""`python -m findap.train RECIPE [--set ...]`: an alias of `findap train` (same recipe loader, same flags).

Under a launcher the documented form is `accelerate launch -m findap train RECIPE` or
`torchrun --nproc-per-node N -m findap train RECIPE`; the rank and world size come from the launcher's environment.
"""
import sys

from findap.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="python -m findap")
