"""lnstab: how LayerNorm placement and the residual step dt decide the stability of deep Transformers.

Where each concept of the paper lives:
    placement, dt      lnstab.model.Residual        (the one residual-update seam)
    training           lnstab.train                 (deterministic, resumable, probed)
    probes             lnstab.probes                (hidden-state moments, adjoints, gradients)
    bounds             lnstab.bounds                (statements and proofs: docs/bounds.md)
    baselines          lnstab.baselines             (unigram/bigram losses: did a run learn?)
    statistics         lnstab.stats                 (scale over training, depth shape, tightness)
    claims             lnstab.claims                (one function per claim: docs/claims.md)
    tables, figures    lnstab.collect, lnstab.tables, lnstab.figures, lnstab.summary
    config, grid       lnstab.config, lnstab.grid   (YAML + --set overrides, checked; sweeps)
"""
__version__ = "0.2.0"
