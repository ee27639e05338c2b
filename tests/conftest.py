import pytest

from lnstab.config import load_config

# A model small enough that a training run takes about a second on one CPU core.
TINY = [
    "model.n_layer=2", "model.d_model=32", "model.n_head=4", "model.block_size=32",
    "train.batch_size=4", "train.steps=30", "train.warmup_steps=3", "train.eval_interval=10",
    "train.eval_batches=2", "train.log_interval=10", "train.ckpt_interval=10",
    "probe.interval=10", "probe.batch_size=2", "probe.jacobian_iters=5",
]


@pytest.fixture
def tiny_overrides():
    return list(TINY)


def tiny_config(*extra):
    return load_config(None, TINY + list(extra))
