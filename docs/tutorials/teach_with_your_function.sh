#!/usr/bin/env bash
# Teach with your own function: three optimizers on f(x, y) from the same start, as figures and a page to explore.
# Run in an empty directory with the package installed (`tracer` on the PATH).
set -euo pipefail

# 1. A bowl with ripples: the global minimum at (0, 0), a local one in every ripple.
F="0.1*(x**2 + y**2) - cos(x)*cos(y)"

# 2. One trace per optimizer, 100 updates from (2.6, 1.9). `--start=` takes the `=` (a start may be negative).
tracer trace --function "$F" --start=2.6,1.9 --optimizer sgd      --lr 0.3 --steps 100 --out sgd.trace.csv --quiet
tracer trace --function "$F" --start=2.6,1.9 --optimizer momentum --lr 0.1 --steps 100 --out momentum.trace.csv --quiet
tracer trace --function "$F" --start=2.6,1.9 --optimizer adam     --lr 0.3 --steps 100 --out adam.trace.csv --quiet

# 3. The paths on the function's own contour (a still for the slides, an animation for the lecture), the loss.
tracer render paths sgd.trace.csv momentum.trace.csv adam.trace.csv -o paths.png
tracer render paths sgd.trace.csv momentum.trace.csv adam.trace.csv -o paths.gif --frames 60
tracer render loss sgd.trace.csv momentum.trace.csv adam.trace.csv -o loss.png

# 4. Inside each optimizer at its first updates: -g, -v, the step and sqrt(s), side by side.
tracer render internals sgd.trace.csv momentum.trace.csv adam.trace.csv -o internals.png --updates 1,6

# 5. One HTML page to pause, step and hover over the three runs in class (no server, no network).
tracer explore sgd.trace.csv momentum.trace.csv adam.trace.csv -o explore.html
