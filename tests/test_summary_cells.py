"""A summarised parameter's cells from its reductions: the recorder's numpy
computation over all parameters at once gives, bit for bit and None for
None, what the definitions give one parameter at a time in Python floats."""

from __future__ import annotations

import math
import struct

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.summaries import REDUCTIONS
from tracer.summaries.cells import Reduced, Summary, summarize

KEY = (torch.device("cpu"), torch.float32)


def _cosine(dot: float, norm_a: float, norm_b: float) -> float | None:
    if not norm_a or not norm_b or not math.isfinite(norm_a * norm_b):
        return None
    return min(1.0, max(-1.0, dot / (norm_a * norm_b)))


def summary_by_definition(item: Reduced, reductions: list[float]) -> tuple[Summary, bool]:
    """The definitions of SUMMARY_QUANTITIES, one parameter, Python floats (the recorder's former code)."""
    r = dict(zip(REDUCTIONS, reductions))
    theta_norm, displacement = math.sqrt(r["theta_sq"]), math.sqrt(r["delta_sq"])
    if not item.has_grad:
        return Summary(theta_norm, None, None, None, None, displacement, None, None, None), math.isfinite(theta_norm)
    g_norm = math.sqrt(r["g_sq"])
    v_norm = math.sqrt(r["v_sq"]) if item.has_v else None
    s_norm = math.sqrt(r["s_sq"]) if item.has_s else None
    finite = all(math.isfinite(x) for x in (theta_norm, g_norm, v_norm, s_norm) if x is not None)
    if not item.lr > 0:
        return Summary(theta_norm, g_norm, v_norm, s_norm, None, displacement, None, None, None), finite
    previous = _cosine(r["previous_dot_delta"], displacement, math.sqrt(r["previous_sq"])) if item.has_previous else None
    cos_g_d = _cosine(item.sign * r["g_dot_delta"], g_norm, displacement)
    return Summary(theta_norm, g_norm, v_norm, s_norm, displacement / item.lr, displacement,
                   r["delta_abs_max"] / item.lr, previous, cos_g_d), finite


def _bits(cell: float | None) -> object:
    return None if cell is None else struct.pack("<d", cell)


# Sums of squares are >= 0 (or inf, or NaN); dot products and the largest |delta| anything.
squares = st.sampled_from([0.0, 1e-300, 2.5, 1e300, math.inf, math.nan]) | st.floats(0, 1e6)
anything = st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]) | st.floats(-1e6, 1e6)
reduction_rows = st.tuples(squares, squares, squares, anything, squares, anything, squares, squares, squares)
flags = st.tuples(st.sampled_from([0.0, -1.0, 1e-3, 0.5]), st.sampled_from([1.0, -1.0]), st.booleans(), st.booleans(), st.booleans(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(reduction_rows, flags), min_size=1, max_size=12))
def test_summarize_equals_the_definitions_bit_for_bit(parameters):
    items = []
    for index, (_, (lr, sign, has_grad, has_previous, has_v, has_s)) in enumerate(parameters):
        items.append(Reduced(index, KEY, index, lr, sign, has_grad, has_grad and has_previous, has_grad and has_v, has_grad and has_s))
    table = np.array([row for row, _ in parameters], dtype=np.float64)

    summaries, finite = summarize(table, items)

    expected = [summary_by_definition(item, list(row)) for item, (row, _) in zip(items, parameters)]
    for item, (summary, _) in zip(items, expected):
        assert [_bits(c) for c in summaries[item.index]] == [_bits(c) for c in summary], item
    assert finite == all(item_finite for _, item_finite in expected)


def test_a_cosine_is_clamped_to_one_and_empty_without_a_norm():
    items = [Reduced(0, KEY, 0, 0.1, 1.0, True, True, True, True), Reduced(1, KEY, 1, 0.1, 1.0, True, True, False, False)]
    # Parameter 0: g . delta a few ulp beyond |g| |delta|; parameter 1: no displacement, so no cosine at all.
    table = np.array([[1.0, 4.0, 1.0, 2.0 * (1 + 4e-16), 1.0, -8.0, 4.0, 1.0, 1.0],
                      [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 4.0, 0.0, 0.0]])
    summaries, finite = summarize(table, items)
    assert summaries[0].cos_g_d == 1.0 and summaries[0].cos_d_prev == -1.0 and summaries[0].d_norm == 20.0
    assert summaries[1].cos_g_d is None and summaries[1].cos_d_prev is None and summaries[1].v_norm is None
    assert finite


def test_no_summarised_parameter_gives_no_summary():
    assert summarize(np.empty((0, len(REDUCTIONS))), []) == ({}, True)


def test_the_tables_are_the_one_declaration_the_code_reads():
    """Every quantity reads declared reductions, every reduction is read; the trace's columns and the
    ranks' combine rules come from the same tables."""
    from tracer.recording import sharding
    from tracer.summaries import QUANTITY_TABLE, REDUCTION_TABLE, SUMMARY_QUANTITIES
    from tracer.trace import SUMMARY_QUANTITIES as TRACE_QUANTITIES

    assert {name for q in QUANTITY_TABLE for name in q.reads} == set(REDUCTIONS)
    assert Summary._fields == SUMMARY_QUANTITIES == TRACE_QUANTITIES
    assert {r.combine for r in REDUCTION_TABLE} == {"sum", "max"}
    assert sharding._MAX_SLOTS == ("delta_abs_max",) and sharding._STATE_SLOTS == ("v_sq", "s_sq")
