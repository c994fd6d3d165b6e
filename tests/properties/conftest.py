"""Hypothesis settings for the property tests: bounded in `make test`, many more examples in `make fuzz`.

`make fuzz` sets HYPOTHESIS_PROFILE=fuzz. A failing example is printed with the seed that
reproduces it (`--hypothesis-seed=N`); the fuzz profile also keeps failures in .hypothesis/.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# derandomize: the bounded run is the same run every time (a failure in `make test` reproduces)
settings.register_profile("test", max_examples=60, deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "4000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "test"))
