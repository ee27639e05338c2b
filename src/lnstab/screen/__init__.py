"""Screen an architecture before spending GPUs on it (``lnstab screen``; docs/screen.md).

One candidate (a placement and norm, or a user's own residual sub-layer ``module:Class``
implementing lnstab.model.Residual's interface) and the references Pre-, Peri- and Post-LN, at
the same width, each built at three depths (``screen_depths``: L/4, L/2 and L blocks) and
measured at initialisation and after a short training on the built-in corpus at each of
SCREEN_LRS. The depth fit after training is made at each learning rate apart (one training
recipe across depths: a fit across per-depth best rates would follow the rate, not the block);
the verdict is the one of the learning rate that learns at every depth (the lowest mean loss
among those), the others reported beside it (``per_lr``), every trial too:

  per sub-layer   forward moments, max_t ||branch_t|| and its bound's slope (built-in
                  placements), adjoint norm ||p^(k)||, Jacobian-norm estimate of the branch
                  (the deepest model);
  per model       a verdict table with the numbers behind each verdict:
    forward   diverges                    a non-finite hidden state, loss or training
              collapses                   top data-wise variance < COLLAPSE_RATIO x entry-wise
              collapses within sequences  the variance over the positions of each sequence
                                          (averaged) < COLLAPSE_RATIO x entry-wise, while the
                                          variance across sequences stays: every position of a
                                          sequence carries one vector
              grows exponentially         per-sub-layer growth factor between the two largest
                                          depths >= EXPONENTIAL_FACTOR
              grows faster than linearly  depth exponent a > 1 (top-of-stream mean|x| ~ L^a, the
                                          claims' statistic and fit)
              at most linear              a <= 1
    backward  per sub-layer: the geometric mean of the per-step adjoint ratios,
              (||p^(0)|| / ||p^(K)||)^(1/K), below 1 / ADJOINT_STEP_WINDOW (vanishing), above
              ADJOINT_STEP_WINDOW (exploding) or between (uniform): it does not change with
              depth; ``diverges`` where the gradients are not finite.
  Also measured, not a verdict: ``weight_homogeneity``, how the top-of-stream norm follows F's
  matrices scaled from WEIGHT_SCALE to WEIGHT_SCALE^2 (a branch's degree of homogeneity in its
  own weights). And whether the training learned (validation loss below the corpus's bigram
  baseline): the verdicts after training of a model that did not learn describe an untrained model.
"""
from .setup import LR_NOT_USED, SCREEN_BASE, SCREEN_LRS, screen_config, screen_depths  # noqa: F401  (torch-free)


def __getattr__(name: str):
    """Everything else is in .core, which needs torch: imported on first use, so that the workflow's
    parse (which checks the screen's config through .setup) stays free of it."""
    import importlib

    if name.startswith("__"):  # module machinery (__path__, __file__, ...): not ours to forward
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.core"), name)
