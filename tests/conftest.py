"""Test-wide settings.

Under CI (the CI environment variable set, as .ci/run's environment has it)
hypothesis runs derandomized: the same examples every run, so a submission's
verdict does not depend on luck. Locally it explores new examples each run,
which is how it finds bugs (it found the scheduler-range canonical form).
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
