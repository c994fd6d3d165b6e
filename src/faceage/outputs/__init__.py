"""What faceage writes for people: provenance metadata, progression strips, GIFs and videos.

``provenance``   the "this image is AI-altered" metadata every output carries, and reading it back
``progression``  a labelled side-by-side strip, an animated GIF and an MP4 of one face at several ages
``commands``     ``faceage info FILE...``
"""
