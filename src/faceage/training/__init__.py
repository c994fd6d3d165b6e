"""Trainers for faceage's own networks, resumable from one checkpoint.

- :mod:`faceage.training.gan`: StyleGAN2 with sampled sub-generators (``faceage train gan``)
- :mod:`faceage.training.losses`, :mod:`.augment` (ADA), :mod:`.ema`: the GAN's parts as small modules
- :mod:`faceage.training.checkpoint_format`: split safetensors checkpoints (<= 16 MiB parts) with a JSON index
- :mod:`faceage.training.dataset`: shard dataset and a step-addressed batch order (exact resume)
- :mod:`faceage.training.distributed`: torchrun / gradient all-reduce helpers
- :mod:`faceage.training.gan_benchmark`: ``faceage bench gan``
- :mod:`faceage.training.commands`: the ``train`` and ``bench`` click groups
"""
