"""FinTrain curation: real sources -> dedup -> decontamination -> LLM judge + distilled classifier -> mixtures.

Entry points (docs/curation.md):
    findap.curate.stage.run(recipe, ctx)                      the `curate` stage
    findap.curate.curation.curate(cfg, out_dir, model=...)    the same without a run directory
    findap.curate.sources.load_source / CONVERTERS            one source -> training examples
    findap.curate.steps.pipeline(step, plan)                  each step as a list of datatrove blocks (blocks/)
    findap.curate.decontam.EvalIndex(eval_texts).match(text)  the evaluation task a text copies, or None
Submodules are imported on use: nothing heavy (datatrove, torch) loads with `import findap.curate`.
"""
