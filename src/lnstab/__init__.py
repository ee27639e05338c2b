"""lnstab: how LayerNorm placement and the residual step dt decide the stability of deep Transformers.

Where each concept of the paper lives:
    placement, dt      lnstab.model.Residual        (the one residual-update seam)
    training           lnstab.train                 (deterministic, resumable, probed)
    probes             lnstab.probes                (hidden-state moments, adjoints, gradients)
    bounds             lnstab.bounds                (THEORY.md sections 3-4; proofs in docs/bounds.md)
    config             lnstab.config                (YAML + --set overrides, checked)
"""
__version__ = "0.1.0"
