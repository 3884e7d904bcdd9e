"""Trace Momentum on the orbit problem as in E1 (lr 0.01, 160 epochs), with tracer.optim's
Momentum and with torch.optim's, and report whether the two traces agree (tracer.diff).

Run:  .venv/bin/python scripts/trace_momentum.py [--logs DIR] [--torch-logs DIR]

Our trace goes to logs/e1-momentum.trace.csv (the reference trace); torch's to a
temporary directory unless --torch-logs is given. Exit status 0 when they agree.
"""

import sys

from tracer.experiments import compare_main

if __name__ == "__main__":
    sys.exit(compare_main("e1-momentum", description=__doc__))
