"""FinTrain curation: real sources -> dedup -> decontamination -> LLM judge + distilled classifier -> mixtures.

Entry points (docs/curation.md):
    findap.curate.stage.run(recipe, ctx)                      the `curate` stage
    findap.curate.curation.curate(cfg, out_dir, model=...)    the same without a run directory
    findap.curate.sources.load_source / CONVERTERS            one source -> training examples
    findap.curate.decontam.decontaminate(examples, eval_texts, n=13)
    findap.curate.dedup.dedup(examples, DedupConfig())
    findap.curate.datatrove_pipeline.run_local / stages       datatrove pipelines for large corpora
Submodules are imported on use: nothing heavy (datatrove, torch) loads with `import findap.curate`.
"""
