"""Networks only (no file I/O in the modules): the StyleGAN2 generator with sub-generators, the discriminator.

Loading and saving live in :mod:`faceage.models.io`; official checkpoints in :mod:`faceage.models.official`.
"""

from __future__ import annotations

from faceage.models.layers import fir_downsample
from faceage.models.stylegan2 import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    SubGenerator,
)

__all__ = ["Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "SubGenerator", "fir_downsample"]
