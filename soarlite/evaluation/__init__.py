"""Evaluation, one family: how a student does and how it compares.

    passk      pass@k (the unbiased estimator) and the result files of `soarlite eval` / `soarlite baseline`
    summary    the end of a run: pass@1 of the untrained, the final and a Hard-Only student on the hard test split
    baselines  the paper's comparisons (Hard-Only, PQ, PS, Base-T, Grounded-T) with the same RLOO and budget
    diversity  the Vendi score of a teacher's questions
    report     `soarlite report`: Markdown and plots of run folders

Every count of right answers comes from `soarlite.scoring`, the one place that samples and grades them.
"""
