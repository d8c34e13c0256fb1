"""placeholder"""
from worldflux_jax.optim import make_optimizer  # noqa: F401
from worldflux_jax.step import (  # noqa: F401
    DATA_AXIS,
    TrainState,
    create_train_state,
    data_mesh,
    make_train_step,
    shard_batch,
)
