"""findap.eval: FinEval, the evaluation framework.

task.py (TaskSpec, Task) + tasks/*.yaml, registry.py (hooks, groups), loaders.py, extract.py, metrics.py,
runner.py (`evaluate`), stage.py (recipe stage, `evaluate_models`), judge.py (judge-scored tasks);
reports over the results are findap.report.
See docs/tasks.md.
"""
