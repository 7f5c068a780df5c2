"""datatrove's log lines go to files, not the console: the console shows findap's progress and warnings only.

datatrove logs through loguru and, for every task of every step, adds a console sink at INFO that prints a launch
banner, the pipeline, per-task stats and the merged stats: on a small curation about 180 of its ~190 console lines.
It has no setting for that sink's level, so while curation runs this module swaps its two logger set-up functions
(`add_task_logger`, which executors call per task, and `setup_default_logger`, which restores the console sink after
each task) for ones that write everything to the task's own log file (`<step>/logs/task_NNNNN.log`, as datatrove
does) and the executor's lines to `executor.log`, and keep only warnings and errors on the console.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"


def _not_a_findap_error(record) -> bool:
    """False for datatrove's report of a findap error raised in a step (`logger.exception`: its traceback with every
    variable's value, about a hundred lines): findap prints that error as one line when the stage fails, and the
    log files keep the traceback. Any other exception (a bug) keeps its traceback on the console."""
    from findap.errors import FindapError

    exception = record["exception"]
    return exception is None or not isinstance(exception.value, FindapError)


@contextlib.contextmanager
def datatrove_logs_to_files(executor_log: Path) -> Iterator[None]:
    import datatrove.executor.base as executor_base
    import datatrove.utils.logging as dt_logging
    from loguru import logger

    executor_log.parent.mkdir(parents=True, exist_ok=True)

    def console_and_file(extra_file=None) -> None:
        logger.remove()
        logger.add(sys.stderr, level="WARNING", format=_FORMAT, colorize=False, filter=_not_a_findap_error)
        logger.add(str(executor_log), level="DEBUG", format=_FORMAT, colorize=False)
        if extra_file is not None:
            logger.add(extra_file, level="DEBUG", format=_FORMAT, colorize=False)

    def task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
        logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")  # where datatrove's own task logs go
        console_and_file(logfile)
        logger.info(f"Launching pipeline for {rank=}")
        return logfile

    saved = (executor_base.add_task_logger, dt_logging.setup_default_logger)
    executor_base.add_task_logger, dt_logging.setup_default_logger = task_logger, console_and_file
    console_and_file()
    try:
        yield
    finally:
        executor_base.add_task_logger, dt_logging.setup_default_logger = saved
        dt_logging.setup_default_logger()
