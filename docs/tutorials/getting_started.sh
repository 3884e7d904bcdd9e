#!/usr/bin/env bash
# Getting started: run in an empty directory with the package installed (`tracer` on the PATH).
set -euo pipefail

# 1. Train Adam and Momentum on the orbit problem for 20 epochs, tracing every update.
tracer trace --problem orbit --optimizer adam --lr 0.01 --epochs 20 --out adam.trace.csv --quiet
tracer trace --problem orbit --optimizer momentum --lr 0.01 --epochs 20 --out momentum.trace.csv --quiet

# 2. What a trace holds: the run, the optimizer and its hyperparameters, loss, lr, step size, final values.
tracer info adam.trace.csv

# 3. Figures from the traces alone (no torch): step sizes, and the two paths on the loss contour.
tracer render step-size adam.trace.csv momentum.trace.csv -o step-size.png
tracer render paths adam.trace.csv momentum.trace.csv -o paths.gif --frames 60

# 4. Where the two runs part (exit status 1: they differ).
tracer diff adam.trace.csv momentum.trace.csv --columns 'Wa.theta' 'Wb.theta' || test $? -eq 1
