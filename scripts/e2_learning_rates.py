"""E2: SGD with momentum at lr 0.012, 0.01, 0.005, 0.001, 0.00015 for 100 epochs, and
0.012 and 0.00015 for 400 epochs; Figures 4-13 of the orbit article.

Run:  .venv/bin/python scripts/e2_learning_rates.py [--no-render] [--logs DIR] [--figures DIR]

Traces into logs/ and renders into figures/ (the same as
`tracer reproduce --only E2`); the runs and figures are in tracer/experiments.py.
"""

import sys

from tracer.experiments import script_main

if __name__ == "__main__":
    sys.exit(script_main(["E2"], description=__doc__))
