"""Read a trace into numpy arrays, and into a pandas DataFrame if pandas is installed.

    python docs/how-to/read_a_trace.py [TRACE]     # default: logs/e1-adam.trace.csv
"""

import sys

import numpy as np

from tracer import load_trace

path = sys.argv[1] if len(sys.argv) > 1 else "logs/e1-adam.trace.csv"
trace = load_trace(path)  # CSV or binary, recognised by the first bytes

# What the run was, how it ended, what it holds.
print(trace.meta["label"], "|", trace.meta["optimizer"]["name"], trace.meta["optimizer"]["hyperparameters"]["lr"])
print(trace.status, len(trace), "updates; final", trace.final)
print(trace.columns)

# Each column is a float64 array over the updates; an empty cell is NaN.
step_size = trace["step_size"]
print("largest step", step_size.max(), "at update", int(trace["update"][np.argmax(step_size)]))
print("updates with a loss above 0.1:", int(np.sum(trace["loss"] > 0.1)))

try:
    import pandas as pd
except ImportError:
    print("pandas is not installed: skipped the DataFrame")
else:
    frame = pd.DataFrame({column: trace[column] for column in trace.columns}).set_index("update")
    print(frame[["loss", "step_size"]].describe())
    # pandas reads the CSV form directly too: skip the metadata line, drop the trailer.
    direct = pd.read_csv(path, skiprows=1, comment="#")
    print("read_csv agrees:", np.array_equal(direct["step_size"].to_numpy(), step_size))
