"""Training groups: the runs of one model shape trained together, in one process, as one stacked model.

A small model's training step on a CPU is mostly many small operations; R runs of one shape stacked
along a leading run axis (``GPT.stack``) do each operation once for all of them. Everything a run
owns stays its own: its folder, lock, checkpoint, batches, probes, evaluation, divergence (a run that
diverges stops alone) and its per-run values (seed, dt, init, learning rate, weight decay, clipping).
Each run's ``lnstab.train.Run`` holds a model and an optimizer whose tensors are views of its slice
of the stacked ones, so probes, bounds and checkpoints see that run alone, and a group's checkpoint
is each member's ordinary ckpt.pt (any member resumes alone or in any other group).

The stacked arithmetic is each run's own (tests/test_groups.py): matrix products batched over runs,
one attention call over every run's sequences, per-run norms and clipping, and AdamW written as
torch's foreach AdamW with per-run scalars. A run's results are therefore the same bits whatever
other runs share its group; against lnstab.train's single-run path the gradients are equal except
the LayerNorm gains' and biases' (summed over tokens in another order: within 1e-6 relative), so a
trained run agrees with its single-run twin to the precision of float32 training, not bit for bit.
"""

# plan: torch-free (the workflow groups its runs while parsing); optimizer: the stacked AdamW and
# per-run clipping; train: the group's loop and train_group, lnstab.train.train for many runs
from .plan import PER_RUN_KEYS, group_key, group_size, plan_groups, shared_config, why_not_stackable  # noqa: F401


def __getattr__(name):  # the torch parts on first use
    if name in ("StackedAdamW", "clip_per_run"):
        from . import optimizer
        return getattr(optimizer, name)
    if name in ("TrainingGroup", "train_group"):
        from . import train
        return getattr(train, name)
    raise AttributeError(f"module 'lnstab.groups' has no attribute {name!r}")
