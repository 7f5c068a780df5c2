"""The report stage of `findap run`: a report over the run directory, written into `runs/<run>/report/`.

findap.report.build writes the report (and serves `findap report` as well); this module is only the stage
contract, `run(recipe, ctx)`.
"""
from __future__ import annotations

from pathlib import Path

from findap.report.build import build_report
from findap.report.collect import load_results
from findap.report.config import ReportConfig


def run(recipe, ctx) -> dict:
    """Report over the runs the pipeline hands in (`ctx.inputs["runs"]`, else the recipe's run directory).

    Deltas are taken against the model labelled "base" when the run evaluated it (the pipeline's label for the
    recipe's starting model), so a run that skipped the base evaluation still gets its report. The recipe's
    `report` section (ReportConfig: the multiplicity adjustment and the resamples) applies where the recipe has
    one; defaults otherwise.
    """
    config = getattr(recipe, "report", None) or ReportConfig()
    runs = [Path(p) for p in (ctx.inputs or {}).get("runs") or [recipe.run_dir]]
    labels = {r.model for r in load_results(runs)}
    base = "base" if "base" in labels else None
    paths = build_report(runs, ctx.dir, base=base, title=f"findap report: {recipe.name}",
                         task_sets=recipe.eval.task_sets, adjust=config.adjust, n_boot=config.n_boot)
    return {"models": sorted(labels), "base": base, "adjust": config.adjust, "outputs": paths}
