"""E4: Adam at lr 0.12 with two MultiplicativeLR schedules (factor 0.8 at even
updates 6-24, factor 0.5 at updates 5, 10, 15, 20) and the fixed-lr baselines of E3;
Figures 15b and 16.

Run:  .venv/bin/python scripts/e4_multiplicative.py [--no-render] [--logs DIR] [--figures DIR]

Traces into logs/ and renders into figures/ (the same as
`tracer reproduce --only E4`); the runs and figures are in tracer/experiments.py.
"""

import sys

from tracer.experiments import script_main

if __name__ == "__main__":
    sys.exit(script_main(["E4"], description=__doc__))
