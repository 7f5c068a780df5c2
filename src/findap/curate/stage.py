"""`findap curate`: the curate stage of a recipe (run(recipe, ctx) -> summary)."""
from __future__ import annotations

from findap.curate.curation import curate, decontam_coverage


def run(recipe, ctx) -> dict:
    cfg = recipe.curate.model_copy(update={"data_root": str(recipe.data_dir.path)})  # findap.data_root's rule
    manifest = curate(cfg, ctx.dir, model=recipe.model, seed=recipe.seed, device=recipe.device,
                      precision=recipe.precision)
    summary = summarize(manifest)
    ctx.log_metrics({"curate": summary})
    return summary


def summarize(manifest: dict) -> dict:
    """The stage summary (DONE): counts per source, filter counts, decontamination coverage in words, tokens,
    throughput, wall time."""
    filters = manifest["filters"]
    quality = filters["quality"]
    removed = sum(sum(v.values()) for v in filters["decontam"]["removed"].values())
    # manifests written before the coverage fields existed: derive them from the task lists they do have
    coverage = filters["decontam"] if "note" in filters["decontam"] else decontam_coverage(filters["decontam"])
    return {
        "input_docs": manifest["input_docs"],
        "docs_per_s": manifest["docs_per_s"],
        "curate_wall_s": manifest["wall_s"],
        "per_source": {name: r["examples"] for name, r in manifest["sources"].items()},
        "bad_rows": sum(len(r["bad_rows"]) for r in manifest["sources"].values()),
        "dedup_exact": filters["dedup"]["exact_total"],
        "dedup_near": filters["dedup"]["near_total"],
        "decontam_removed": removed,
        "decontamination": {"checked": coverage["checked"], "unchecked": coverage["unchecked"], "removed": removed,
                            "note": coverage["note"]},
        "judge": quality.get("judge"),
        "classifier_f1": (quality.get("classifier") or {}).get("heldout", {}).get("f1"),
        "quality_decisions": quality.get("decisions"),
        "groups": {g: {"docs": v["all"]["docs"], "tokens": v["all"]["tokens"],
                       "kind_shares": v["all"]["kind_shares"], "warnings": v["warnings"]}
                   for g, v in manifest["groups"].items()},
    }
