"""`findap distill`: preference pairs from the policy's own solutions (Trajectory-GenORM + Trajectory-GenPRM).

Inputs: `ctx.inputs["policy"]` (default policy model: the train stage's model or the recipe's base model).
Outputs in the stage directory: `pairs.jsonl`, `dev_pairs.jsonl`, `stats.json`, `progress.jsonl` (resume log).
"""
from __future__ import annotations

from findap.distill.config import DistillConfig
from findap.distill.driver import distill_items
from findap.distill.prompts import load_source
from findap.engines import make_engine


def build_engines(cfg: DistillConfig, default_model: str, device: str = "auto", precision: str = "auto"):
    """(policy, judge); the judge is the policy engine itself unless configured, so one model loads once.
    `device`, `precision`: the recipe's, for engine settings that leave them to it."""
    policy_spec = cfg.policy.resolve(model=default_model, device=device, precision=precision)
    policy = make_engine(policy_spec)
    if cfg.judge is None:
        return policy, policy
    judge_spec = cfg.judge.resolve(model=default_model, device=device, precision=precision)
    return policy, (policy if judge_spec == policy_spec else make_engine(judge_spec))


def run(recipe, ctx) -> dict:
    cfg: DistillConfig = recipe.distill
    seed = cfg.seed if cfg.seed is not None else recipe.seed
    default_model = str(ctx.inputs.get("policy") or recipe.model)
    # the same share curation reserves for FinEval: no prompt comes from a scored portion
    sources = [s.model_copy(update={"path": str(recipe.data_dir.resolve(s.path))}) if s.path else s
               for s in cfg.sources]  # dataset paths resolve against the data root (findap.data_root)
    items = [item for source in sources for item in load_source(source, recipe.curate.eval_holdout)]
    if not items:
        raise ValueError("distill: the configured sources hold no prompts")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("distill: two prompts share an id; give each source distinct files or ids")
    policy, judge = build_engines(cfg, default_model, recipe.device, recipe.precision)
    ctx.logger().info("distill: %d prompts, policy %s, judge %s", len(items), cfg.policy.model or default_model,
                      (cfg.judge.model if cfg.judge else None) or "policy")
    stats = distill_items(items, policy, judge, cfg, ctx.dir, seed)
    return {**stats, "pairs_file": str(ctx.dir / "pairs.jsonl")}
