"""datatrove's per-task banners and stats go to log files during curation; its warnings still reach the console."""
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from loguru import logger

from findap.curate.task_logs import datatrove_logs_to_files


class Noisy(PipelineStep):
    name = "noisy"

    def run(self, data, rank: int = 0, world_size: int = 1):
        logger.info(f"an info line from task {rank}")
        logger.warning(f"a warning from task {rank}")
        return data or iter(())


def test_task_logs_go_to_files_and_warnings_to_the_console(tmp_path, capfd):
    logs = tmp_path / "logs"
    with datatrove_logs_to_files(logs / "executor.log"):
        LocalPipelineExecutor(pipeline=[Noisy()], tasks=2, workers=1, logging_dir=str(logs / "step")).run()
    console = capfd.readouterr().err
    assert "a warning from task 0" in console and "a warning from task 1" in console
    assert "an info line" not in console and "PIPELINE" not in console and "Stats" not in console
    task_log = (logs / "step" / "logs" / "task_00000.log").read_text()
    assert "an info line from task 0" in task_log and "Launching pipeline" in task_log
    assert "Stats" in (logs / "executor.log").read_text()  # the merged stats datatrove prints at the end
    logger.info("after curation")  # datatrove's default console sink is back
    assert "after curation" in capfd.readouterr().err


class Refusing(PipelineStep):
    name = "refusing"

    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    def run(self, data, rank: int = 0, world_size: int = 1):
        raise self.error


def test_a_findap_error_in_a_step_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, capfd):
    """datatrove reports a step's exception with its traceback and every variable's value: for a findap error
    (input or recipe problem) findap's own one-line message is what the user needs, so the console drops the
    report and the executor log keeps it; an unexpected exception still shows its traceback."""
    import pytest

    from findap.errors import UsageError

    logs = tmp_path / "logs"
    with datatrove_logs_to_files(logs / "executor.log"), pytest.raises(UsageError):
        LocalPipelineExecutor(pipeline=[Refusing(UsageError("curate group g: no examples"))], tasks=1, workers=1,
                              logging_dir=str(logs / "a")).run()
    assert "no examples" not in capfd.readouterr().err
    assert "curate group g: no examples" in (logs / "executor.log").read_text()
    with datatrove_logs_to_files(logs / "executor.log"), pytest.raises(ZeroDivisionError):
        LocalPipelineExecutor(pipeline=[Refusing(ZeroDivisionError("a bug"))], tasks=1, workers=1,
                              logging_dir=str(logs / "b")).run()
    console = capfd.readouterr().err
    assert "a bug" in console and "Traceback" in console
