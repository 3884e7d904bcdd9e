"""E3: Adam at fixed lr 0.01 and 0.12, and lr 0.12 with two MultiStepLR schedules
stepped after every update; Figures 14 and 15 of the orbit article.

Run:  .venv/bin/python scripts/e3_multistep.py [--no-render] [--logs DIR] [--figures DIR]

Traces into logs/ and renders into figures/ (the same as
`tracer reproduce --only E3`); the runs and figures are in tracer/experiments.py.
"""

import sys

from tracer.experiments import script_main

if __name__ == "__main__":
    sys.exit(script_main(["E3"], description=__doc__))
