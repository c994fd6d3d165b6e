"""``faceage serve``: a small web app for people who age photos.

``worker``    one model thread behind a bounded FIFO queue (busy -> HTTP 503)
``app``       the requests and their limits, independent of HTTP plumbing (``ServeApp``)
``backend``   the aging engine behind the page (one ``Ager`` per served method)
``server``    uvicorn (h11) + Starlette in front of ``ServeApp``
``commands``  the ``faceage serve`` command
``static/``   the page, its script and style (no external scripts, fonts or requests)
"""
