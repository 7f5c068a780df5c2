"""Ending a training run in the middle of a step, as a killed process would (kill-and-resume tests)."""
from __future__ import annotations


class Crash(RuntimeError):
    """The simulated crash."""


def crashing_after(parallel, steps: int):
    """A copy of the process layout `parallel` whose training step `steps + 1` fails after its backward, on every
    rank, before any optimizer update: checkpoints up to step `steps` are on disk, nothing later. The gradients
    of the failed step are dropped, as they would be with the killed process."""

    class CrashingLayout(type(parallel)):
        def finish_step(self, model, loss_total):
            self.steps_done += 1
            if self.steps_done > steps:
                model.zero_grad(set_to_none=True)
                raise Crash(f"crashed in step {self.steps_done}")
            super().finish_step(model, loss_total)

    crashing = CrashingLayout.__new__(CrashingLayout)
    crashing.__dict__.update(parallel.__dict__, steps_done=0)
    return crashing
