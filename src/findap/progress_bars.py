"""Progress bars on a terminal (or in a notebook), never in a pipe, a redirected file or CI output.

tqdm redraws a bar with carriage returns; written to something that is not a terminal, every redraw stays in the
output, so a log of a run held one line of hundreds of frames per bar. tqdm's own rule for `disable=None` (draw
only when the stream is a terminal) is the one wanted, except in Jupyter, whose output stream is no terminal but
shows bars as widgets. The same rule is given to transformers' bars (one per model load) by `quiet_library_bars`.
"""
from __future__ import annotations

import functools
import sys


def _draw(enabled: bool) -> bool | None:
    """tqdm's `disable` for a bar the caller wants (`enabled`): None lets tqdm decide by the stream."""
    if not enabled:
        return True
    return False if "ipykernel" in sys.modules else None


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar over `iterable` (or a manual one with `total=`), drawn where someone is watching."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=_draw(enabled), **kwargs)


@functools.lru_cache(maxsize=1)
def quiet_library_bars() -> None:
    """transformers' bars ("Loading weights" for every model load, "Writing model shards") under the same rule,
    unless its caller passed `disable` itself."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_tqdm_hook(lambda factory, args, kwargs: factory(*args, **{"disable": _draw(True), **kwargs}))
