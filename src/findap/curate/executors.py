"""Runs the curation steps (steps.py) on a datatrove executor: `curate.executor: local | slurm | ray`.

Each step is one datatrove pipeline of blocks (steps.pipeline); its task count comes from steps.task_counts
(per-shard steps: curate.tasks; ordered passes: 1). datatrove writes a completion marker per finished task under
work/logs/<step>/completions/, so a rerun of a killed curation skips finished tasks.

- local: LocalPipelineExecutor, one step after another; `workers` > 1 runs tasks in that many processes.
- ray:   RayPipelineExecutor on the cluster `executor_options.address` names (default: RAY_ADDRESS, else a local
         Ray started here); the driver waits for each step before starting the next.
- slurm: SlurmPipelineExecutor; every step is submitted at once, each job depending on the previous one
         (afterok), and `findap curate` returns. Run it again when the jobs have finished: every task is marked
         complete, nothing is resubmitted, and the manifest is assembled from the work folder.

datatrove's own log lines go to work/logs/<step>/logs/task_*.log and work/logs/executor.log, not the console
(task_logs.py); its warnings and errors still reach the console.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from findap.child_processes import forked_children_die_with_this_process
from findap.curate.plan import Plan
from findap.curate.steps import STEPS, pipeline, task_counts
from findap.curate.task_logs import datatrove_logs_to_files
from findap.host_memory import peak_memory, resident_bytes

log = logging.getLogger(__name__)


class CurationSubmitted(RuntimeError):
    """Slurm jobs were submitted; the outputs exist once they finish (rerun the stage to collect them)."""


class StepFailed(RuntimeError):
    pass


def _local(plan: Plan, step: str, tasks: int, logging_dir: str, options: dict):
    from datatrove.executor import LocalPipelineExecutor

    workers = min(plan.config.workers, tasks)
    return LocalPipelineExecutor(pipeline=pipeline(step, plan), tasks=tasks, workers=workers,
                                 logging_dir=logging_dir, **options)


def _ray(plan: Plan, step: str, tasks: int, logging_dir: str, options: dict):
    import ray
    from datatrove.executor.ray import RayPipelineExecutor

    options = dict(options)
    address = options.pop("address", None)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
    return RayPipelineExecutor(pipeline=pipeline(step, plan), tasks=tasks, workers=plan.config.workers,
                               logging_dir=logging_dir, **options)


def _slurm(plan: Plan, step: str, tasks: int, logging_dir: str, options: dict, depends=None):
    from datatrove.executor.slurm import SlurmPipelineExecutor

    options = {"time": "04:00:00", "partition": "cpu"} | dict(options)
    return SlurmPipelineExecutor(pipeline=pipeline(step, plan), tasks=tasks, workers=plan.config.workers,
                                 logging_dir=logging_dir, job_name=f"findap-curate-{step}", depends=depends,
                                 **options)


def run_steps(plan: Plan) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Run every step in order on the recipe's executor; returns ({step: seconds}, {step: this process's memory
    after it}). The memory is what a step left resident (`rss_gb`) and the process's peak so far (`peak_rss_gb`):
    the step at which the peak rises is the one that holds the most, and local tasks with `workers: 1` run in
    this process.
    Slurm: raises CurationSubmitted after submitting (unless every task is already complete)."""
    cfg = plan.config
    counts = task_counts(plan)
    logs = plan.dir / "logs"
    if cfg.executor == "slurm":
        return _submit_slurm(plan, counts, logs), {}
    make = _ray if cfg.executor == "ray" else _local
    forked_children_die_with_this_process()  # datatrove forks a Manager server per step: no orphans after a kill
    timings, memory = {}, {}
    for step in STEPS:
        start = time.time()
        executor = make(plan, step, counts[step], str(logs / step), cfg.executor_options)
        with datatrove_logs_to_files(logs / "executor.log"):
            executor.run()
        missing = executor.get_incomplete_ranks(range(counts[step]))
        if missing:
            raise StepFailed(f"curation step '{step}' did not finish tasks {missing} on the {cfg.executor} executor; "
                             f"see the task logs in {logs / step}/logs/")
        timings[step] = round(time.time() - start, 2)
        # what a step's blocks loaded (eval index, tokenizer, encoder) lives on them: freed with the executor
        del executor
        memory[step] = {"rss_gb": round(resident_bytes() / 2**30, 3),
                        "peak_rss_gb": peak_memory().get("peak_rss_gb", 0.0)}
    return timings, memory


def _submit_slurm(plan: Plan, counts: dict[str, int], logs: Path) -> dict[str, float]:
    previous = None
    executors = []
    for step in STEPS:
        previous = _slurm(plan, step, counts[step], str(logs / step), plan.config.executor_options, previous)
        executors.append(previous)
    if all(not e.get_incomplete_ranks(range(counts[s])) for e, s in zip(executors, STEPS)):
        return {}
    previous.run()  # launches the whole chain, dependencies first
    raise CurationSubmitted(
        f"submitted the curation to Slurm ({len(STEPS)} dependent jobs, logs under {logs}); run the curate stage "
        "again when they have finished to collect the outputs and the manifest")
