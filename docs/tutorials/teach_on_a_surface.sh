#!/usr/bin/env bash
# Teach with a function: the four optimizers down Rosenbrock's curved valley, as figures and animations.
# Run in an empty directory with the package installed (`tracer` on the PATH).
set -euo pipefail

# 1. One trace per optimizer, each at a learning rate that does not diverge (one update per epoch).
tracer trace --problem rosenbrock --optimizer sgd      --lr 0.0015 --epochs 400 --out sgd.trace.csv --quiet
tracer trace --problem rosenbrock --optimizer momentum --lr 0.0003 --epochs 400 --out momentum.trace.csv --quiet
tracer trace --problem rosenbrock --optimizer rmsprop  --lr 0.003  --epochs 400 --out rmsprop.trace.csv --quiet
tracer trace --problem rosenbrock --optimizer adam     --lr 0.06   --epochs 400 --out adam.trace.csv --quiet

# 2. The four paths on the function's contour: a still for the slides, an animation for the lecture.
tracer render paths sgd.trace.csv momentum.trace.csv rmsprop.trace.csv adam.trace.csv -o paths.png
tracer render paths sgd.trace.csv momentum.trace.csv rmsprop.trace.csv adam.trace.csv -o paths.gif --frames 80

# 3. Inside Adam: -g, -v, the step and sqrt(s) at every update, beside its step size and learning rate.
tracer render internals adam.trace.csv -o adam-internals.gif --frames 80

# 4. How long each step is: the effective step size lr*|d| of the four.
tracer render step-size sgd.trace.csv momentum.trace.csv rmsprop.trace.csv adam.trace.csv -o step-size.png
