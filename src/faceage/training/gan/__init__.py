"""StyleGAN2 training with sampled sub-generators and a consistency loss (``faceage train gan``),
resumable; one module per job:

- ``config``       ``GANConfig``: what defines a run's maths, saved in every checkpoint
- ``state``        ``TrainState`` and ``create_state``: networks, optimizers, counters
- ``steps``        one iteration: D step, lazy R1, G step with the consistency loss, path length, EMA, ADA
- ``checkpoints``  the state in and out of checkpoints; export of the EMA generator; compact checkpoints
- ``monitor``      sample grids, the quick FD, the metrics meter
- ``loop``         ``RunOptions`` and ``train``: start or resume, step, checkpoint, stop cleanly

The run folder, metrics log, device, resume and stop signals are ``faceage.training.run``'s, shared
with every trainer.
"""

from faceage.training.gan.config import STATE_FORMAT, GANConfig
from faceage.training.gan.loop import RunOptions, train
from faceage.training.gan.run_state import compact_checkpoint, export_ema, load_module
from faceage.training.gan.state import TrainState, create_state
from faceage.training.gan.steps import sample_submodel, train_step

__all__ = [
    "STATE_FORMAT",
    "GANConfig",
    "RunOptions",
    "TrainState",
    "compact_checkpoint",
    "create_state",
    "export_ema",
    "load_module",
    "sample_submodel",
    "train",
    "train_step",
]
