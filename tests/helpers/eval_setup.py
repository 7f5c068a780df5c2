"""What eval tests build again and again: a tiny-model engine with a request cache, and a task with a few fields
changed (short answers keep generation tests fast)."""
from findap.engines import make_engine
from findap.engines.base import EngineSpec
from findap.eval.registry import get_task
from findap.eval.task import Task


def tiny_engine(model_dir, cache):
    return make_engine(EngineSpec(kind="hf", model=model_dir, device="cpu", precision="fp32", batch_size=8,
                                  cache_path=str(cache)))


def short_task(name, root, **update):
    task = get_task(name, root=root)
    return Task(task.spec.model_copy(update=update), root=root)
