"""Networks only (no file I/O in the modules): the StyleGAN2 generator with sub-generators, the
discriminator, IPCGAN, the age regressor, and the feature nets; plus the prototype data format.

Import what you need from its module (``faceage.models.stylegan2``...): this package imports
nothing itself, so reading prototypes never loads torch. Loading and saving live in
:mod:`faceage.models.io`; official checkpoints in :mod:`faceage.models.official`.
"""
