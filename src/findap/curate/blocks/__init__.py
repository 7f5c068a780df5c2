"""The curation's datatrove blocks (the steps that chain them: curate/steps.py).

    documents  examples as Documents; the readers and writers of the work folder's parquet files
    convert    SourceReader (the recipe's sources), EvalTextsFile (what decontamination compares against)
    annotate   MinWords (filter), DocumentKeys (exact key, MinHash band keys, contaminating eval task)
    ordered    DedupFilter, DecontamFilter, JudgeSample: one pass over the keys in the global order
    quality    Survivors, JudgeLabels, ClassifierHead, QualityScores, QualityFilter, TokenCounts, MixtureKeys
    select     GroupMixtures: each group's selection from the survivors' columns
    merge      Pieces (the chosen examples with their output positions), WriteOutputs (the position-order merge)
"""
