"""A loss f(x, y) written as text, read safely and evaluated with numpy or torch.

    f = parse_expression("x**2 + 10*y**2")
    f(np.array([1.0]), np.array([2.0]))      # numpy arrays in, numpy out (contours)
    f(model.x, model.y)                       # torch tensors in, a tensor with autograd out

The text is parsed with Python's `ast` module and checked node by node
against a short whitelist; it is never handed to `eval`, `exec` or `compile`.
Accepted:

- numbers (`3`, `0.5`, `1e-3`), the variables `x` and `y`, the constants `pi` and `e`;
- `+ - * / **`, unary minus and plus, parentheses;
- the functions of one argument in FUNCTIONS (`sin`, `exp`, `sqrt`, ...).

Everything else (names, attribute access, subscripts, strings, keyword
arguments, lambdas, comparisons, `^`) is refused with one line saying what
was found and what is accepted. Sub-expressions without x or y are folded to
one float64 number while parsing (with overflow giving inf), so a text such
as `9**9**9**9` costs nothing: Python's unbounded integers are never used.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tracer.errors import TracerError

MAX_LENGTH = 1000  # characters: a lecture's function is a line, not a page
MAX_NODES = 400  # syntax-tree nodes after parsing; keeps recursion shallow
VARIABLES = ("x", "y")
CONSTANTS = {"pi": math.pi, "e": math.e}
# name -> (numpy function, torch function name)
FUNCTIONS: dict[str, tuple[Callable, str]] = {
    "abs": (np.abs, "abs"),
    "sqrt": (np.sqrt, "sqrt"),
    "exp": (np.exp, "exp"),
    "log": (np.log, "log"),
    "sin": (np.sin, "sin"),
    "cos": (np.cos, "cos"),
    "tan": (np.tan, "tan"),
    "tanh": (np.tanh, "tanh"),
    "sinh": (np.sinh, "sinh"),
    "cosh": (np.cosh, "cosh"),
    "atan": (np.arctan, "atan"),
}
_OPERATORS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a}
ACCEPTED = (f"accepted: numbers, x, y, pi, e, + - * / ** and parentheses, and the functions "
            f"{', '.join(FUNCTIONS)}")
# What a refused node is called in the message ("an attribute access is not allowed").
_NODE_WORDS = {
    ast.Attribute: "attribute access", ast.Subscript: "indexing", ast.Lambda: "a lambda",
    ast.Compare: "a comparison", ast.BoolOp: "and/or", ast.IfExp: "if/else", ast.List: "a list",
    ast.Tuple: "a tuple (a comma)", ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string",
    ast.Starred: "a starred argument", ast.NamedExpr: "an assignment (:=)", ast.Await: "await",
    ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator", ast.DictComp: "a comprehension",
    ast.SetComp: "a comprehension", ast.Slice: "a slice",
}
_BINARY_WORDS = {ast.BitXor: "'^' (write powers as x**2)", ast.FloorDiv: "'//'", ast.Mod: "'%'",
                 ast.MatMult: "'@'", ast.BitAnd: "'&'", ast.BitOr: "'|'", ast.LShift: "'<<'",
                 ast.RShift: "'>>'"}


class ExpressionError(TracerError, ValueError):
    """A function text that cannot be read: one line naming what was found and what is accepted."""


@dataclass(frozen=True)
class Expression:
    """A checked f(x, y). `text` is what the user wrote; `variables` the ones it uses.

    Calling it evaluates the tree: with torch tensors for x or y it uses torch's
    functions (autograd follows), otherwise numpy's (arrays broadcast).
    """

    text: str
    tree: ast.expr = field(repr=False, compare=False)
    variables: frozenset[str] = field(compare=False)

    def __call__(self, x: Any, y: Any) -> Any:
        library = "torch" if _is_torch(x) or _is_torch(y) else "numpy"
        with np.errstate(all="ignore"):  # a contour's grid may reach where log or sqrt is nan
            return _evaluate(self.tree, {"x": x, "y": y}, library)


def parse_expression(text: str) -> Expression:
    """Check `text` against the whitelist and return it as an `Expression`.

    Raises ExpressionError (a TracerError) naming what is not accepted."""
    if not isinstance(text, str):
        raise ExpressionError(f"a function is text such as 'x**2 + 10*y**2', got {type(text).__name__}")
    shown = text if len(text) <= 60 else text[:57] + "..."
    where = f"cannot read the function {shown!r}"
    if not text.strip():
        raise ExpressionError(f"{where}: it is empty; write f(x, y), e.g. 'x**2 + 10*y**2'")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"{where}: {len(text)} characters, at most {MAX_LENGTH} are accepted")
    if "\n" in text or "\r" in text:
        raise ExpressionError(f"{where}: it spans several lines; write it on one line")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"{where}: not a formula ({error.msg} at column {error.offset}); {ACCEPTED}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"{where}: nested too deeply; {ACCEPTED}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ExpressionError(f"{where}: {nodes} terms, at most {MAX_NODES} are accepted")
    variables: set[str] = set()
    body = _check(tree.body, where, variables)
    if not variables:
        raise ExpressionError(f"{where}: it uses neither x nor y, so there is nothing to optimize")
    return Expression(text.strip(), body, frozenset(variables))


def _check(node: ast.AST, where: str, variables: set[str]) -> ast.expr:
    """The node, checked, with every x- and y-free part folded into one number."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ExpressionError(f"{where}: {value!r} is not a number; {ACCEPTED}")
        return ast.Constant(float(value))
    if isinstance(node, ast.Name):
        if node.id in VARIABLES:
            variables.add(node.id)
            return node
        if node.id in CONSTANTS:
            return ast.Constant(CONSTANTS[node.id])
        hint = " (functions are called, e.g. sin(x))" if node.id in FUNCTIONS else ""
        raise ExpressionError(f"{where}: unknown name {node.id!r}{hint}; the variables are x and y; {ACCEPTED}")
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            word = _BINARY_WORDS.get(type(node.op), type(node.op).__name__)
            raise ExpressionError(f"{where}: the operator {word} is not accepted; {ACCEPTED}")
        left, right = _check(node.left, where, variables), _check(node.right, where, variables)
        return _fold(ast.BinOp(left, node.op, right))
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise ExpressionError(f"{where}: the operator {type(node.op).__name__} is not accepted; {ACCEPTED}")
        return _fold(ast.UnaryOp(node.op, _check(node.operand, where, variables)))
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None:
            raise ExpressionError(f"{where}: only the listed functions may be called, by name; {ACCEPTED}")
        if name not in FUNCTIONS:
            raise ExpressionError(f"{where}: unknown function {name!r}; {ACCEPTED}")
        if node.keywords or len(node.args) != 1:
            raise ExpressionError(f"{where}: {name}() takes one argument, e.g. {name}(x)")
        return _fold(ast.Call(ast.Name(name, ast.Load()), [_check(node.args[0], where, variables)], []))
    word = _NODE_WORDS.get(type(node), type(node).__name__)
    raise ExpressionError(f"{where}: {word} is not allowed; {ACCEPTED}")


def _fold(node: ast.expr) -> ast.expr:
    """A node whose operands are all numbers becomes one float64 number (inf on overflow)."""
    if isinstance(node, ast.BinOp):
        operands = [node.left, node.right]
    elif isinstance(node, ast.UnaryOp):
        operands = [node.operand]
    else:
        operands = list(node.args)
    if all(isinstance(operand, ast.Constant) for operand in operands):
        with np.errstate(all="ignore"):
            return ast.Constant(float(_evaluate(node, {}, "numpy")))
    return node


def _evaluate(node: ast.expr, values: dict[str, Any], library: str) -> Any:
    if isinstance(node, ast.Constant):
        # numpy float64 scalars keep constant arithmetic in IEEE doubles (inf, not OverflowError).
        return np.float64(node.value) if library == "numpy" else node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _OPERATORS[type(node.op)](_evaluate(node.left, values, library),
                                         _evaluate(node.right, values, library))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values, library))
    if isinstance(node, ast.Call):
        numpy_function, torch_name = FUNCTIONS[node.func.id]
        argument = _evaluate(node.args[0], values, library)
        if library == "numpy":
            return numpy_function(argument)
        import torch

        if not isinstance(argument, torch.Tensor):
            argument = torch.as_tensor(argument, dtype=torch.float64)
        return getattr(torch, torch_name)(argument)
    raise ExpressionError(f"internal: unchecked node {type(node).__name__}")  # _check lets none through


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")
