"""Training data: scan the face datasets, split them, align faces into shards (``data prepare``).

- ``faceage.data.datasets``: ``scan_utkface``, ``scan_aaf`` -> (``Record``s, ``Reject``s).
- ``faceage.data.split``: ``assign_splits`` (deterministic, stratified, no stored list).
- ``faceage.data.shards``: ``ShardWriter``, ``iter_shard``, ``ShardReader``, ``read_index``
  (the reader needs only the stdlib, numpy and Pillow).
- ``faceage.data.prepare``: ``prepare(...) -> PrepareReport``; the ``faceage data`` commands are in ``faceage.data.commands``.

Importing this package is cheap: nothing heavy (torch, OpenCV, LiteRT) loads until
``prepare`` aligns faces.
"""
