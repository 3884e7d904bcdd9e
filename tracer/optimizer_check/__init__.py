"""Is an optimizer equal to a reference, update by update?

``compare.py`` is the library (``compare_optimizers``, ``assert_optimizers_match``,
the cases and the report); ``cli.py`` is ``tracer check-optimizer``.
"""

from tracer.optimizer_check.cli import CONFIG_GRAMMAR, STATE_KEY_GRAMMAR, parse_config, parse_state_keys, resolve
from tracer.optimizer_check.compare import (
    CURVATURE,
    DEFAULT_DTYPES,
    DEFAULT_SCHEDULERS,
    DEFAULT_SHAPES,
    Case,
    CheckResult,
    OptimizerFactory,
    SchedulerFactory,
    TensorDifference,
    assert_optimizers_match,
    bitwise_equal,
    compare_optimizers,
)

__all__ = [
    "CONFIG_GRAMMAR", "CURVATURE", "Case", "CheckResult", "DEFAULT_DTYPES", "DEFAULT_SCHEDULERS", "DEFAULT_SHAPES",
    "OptimizerFactory", "STATE_KEY_GRAMMAR", "SchedulerFactory", "TensorDifference", "assert_optimizers_match",
    "bitwise_equal", "compare_optimizers", "parse_config", "parse_state_keys", "resolve",
]
