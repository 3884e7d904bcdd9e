"""The linear-regression schedulers article: SGD lr 0.1 for 10 epochs with
ExponentialLR(0.9), StepLR(4, 0.9) and LinearLR(0.5, 4), stepped once per epoch; the
learning-rate figure.

Run:  .venv/bin/python scripts/linear_schedulers.py [--no-render] [--logs DIR] [--figures DIR]

Traces into logs/ and renders into figures/ (the same as
`tracer reproduce --only linear`); the runs and figures are in tracer/experiments.py.
"""

import sys

from tracer.experiments import script_main

if __name__ == "__main__":
    sys.exit(script_main(["linear"], description=__doc__))
