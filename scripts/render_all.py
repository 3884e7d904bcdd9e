"""Re-render every catalogue figure from the traces already in logs/, without training.

Run:  .venv/bin/python scripts/render_all.py [--only NAME ...] [--logs DIR] [--figures DIR]

NAME is an experiment (E1 E2 E3 E4 linear extra) or a figure id (fig01 ...);
see `tracer reproduce --list`. Missing traces are an error: make them with
`tracer reproduce --no-render`.
"""

import sys

from tracer.experiments import render_all_main

if __name__ == "__main__":
    sys.exit(render_all_main(description=__doc__))
