"""sympy expressions from untrusted text without ``eval``: the PRM800K ``_sympy_parse`` made safe.

The paper's ``fast`` checker (understand-r1-zero ``math_grader.py: _sympy_parse`` / ``are_equal_under_sympy``,
from PRM800K's grader) calls ``sympy.parsing.sympy_parser.parse_expr`` on the model's normalised answer with
``standard_transformations + (implicit_multiplication_application,)``. ``parse_expr`` ends in a Python
``eval`` whose namespace holds every sympy name and Python's builtin functions (``__import__``, ``getattr``,
``open``...), so a model can make it run code. This module keeps the part of ``parse_expr`` that is pure token
rewriting -- ``stringify_expr`` (tokenise, then the same transformations: ``2x`` -> ``2*x``, ``xy`` -> ``x*y``,
``x`` -> ``Symbol('x')``, numbers -> ``Integer``/``Float``) -- and replaces the ``eval`` by an interpreter of
the resulting Python syntax tree that accepts only numbers, symbols, ``+ - * / **``, unary signs and calls of a
short list of sympy functions and constructors. Anything else (attribute access, subscripts, tuples,
comparisons, keywords, any other name) raises ``UnsafeExpression``, which the checker scores as "not equal"
where the paper would have evaluated it; so do exponents or factorials too large to compute within a timeout.
"""

from __future__ import annotations

import ast
import builtins
import types
from functools import lru_cache


class UnsafeExpression(ValueError):
    """The expression uses syntax or names outside the whitelist (or is too large to evaluate)."""


MAX_EXPONENT = 1000  # |n| of an integer power or factorial above which an expression is refused


@lru_cache(maxsize=1)
def _namespace() -> tuple[dict, dict, tuple]:
    """(token-level globals, whitelisted callables/constants, transformations), built once per process."""
    import sympy
    from sympy.parsing.sympy_parser import implicit_multiplication_application, standard_transformations

    # What parse_expr's auto_symbol / split_symbols consult to decide which names are kept as names (rather
    # than turned into Symbol('...')): the names of ``from sympy import *`` plus Python's builtin functions.
    names = {n: getattr(sympy, n) for n in sympy.__all__ if hasattr(sympy, n)}
    names.update({k: v for k, v in vars(builtins).items() if isinstance(v, types.BuiltinFunctionType)})
    names.update(max=sympy.Max, min=sympy.Min)
    allowed = {
        "Integer": sympy.Integer, "Float": sympy.Float, "Number": sympy.Number, "Rational": sympy.Rational,
        "Symbol": sympy.Symbol, "Function": sympy.Function,
        "pi": sympy.pi, "E": sympy.E, "I": sympy.I, "oo": sympy.oo, "zoo": sympy.zoo, "nan": sympy.nan,
        "sqrt": sympy.sqrt, "root": sympy.root, "factorial": sympy.factorial, "abs": sympy.Abs, "Abs": sympy.Abs,
        "exp": sympy.exp, "log": sympy.log, "ln": sympy.log, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
        "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc, "asin": sympy.asin, "acos": sympy.acos,
        "atan": sympy.atan, "re": sympy.re, "im": sympy.im,
    }
    return names, allowed, standard_transformations + (implicit_multiplication_application,)


_CONSTRUCTORS_OF_LITERALS = {"Integer", "Float", "Number", "Rational", "Symbol", "Function"}


def _eval(node: ast.AST, allowed: dict):
    import sympy

    if isinstance(node, ast.Expression):
        return _eval(node.body, allowed)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, allowed), _eval(node.right, allowed)
        op = type(node.op)
        if op is ast.Add:
            return left + right
        if op is ast.Sub:
            return left - right
        if op is ast.Mult:
            return left * right
        if op is ast.Div:
            return left / right
        if op is ast.Pow:
            if getattr(right, "is_Number", False) and abs(right) > MAX_EXPONENT:
                raise UnsafeExpression("exponent too large")
            return left**right
        raise UnsafeExpression(f"operator {op.__name__}")
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, allowed)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        raise UnsafeExpression(f"operator {type(node.op).__name__}")
    if isinstance(node, ast.Name):
        if node.id in allowed and node.id not in _CONSTRUCTORS_OF_LITERALS:
            return allowed[node.id]
        raise UnsafeExpression(f"name {node.id!r}")
    if isinstance(node, ast.Call):
        if node.keywords:
            raise UnsafeExpression("keyword arguments")
        if isinstance(node.func, ast.Name) and node.func.id in _CONSTRUCTORS_OF_LITERALS:
            # Integer(2), Float('2.5'), Number('2'), Symbol('x'), Function('f'): one literal argument.
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant):
                raise UnsafeExpression(f"{node.func.id} of a non-literal")
            value = node.args[0].value
            if not isinstance(value, (int, str)) or isinstance(value, bool):
                raise UnsafeExpression(f"{node.func.id} of {type(value).__name__}")
            if node.func.id in ("Symbol", "Function") and not isinstance(value, str):
                raise UnsafeExpression("symbol name must be a string")
            return allowed[node.func.id](value)
        if isinstance(node.func, ast.Name):
            func = _eval(node.func, allowed)
        elif isinstance(node.func, ast.Call):  # Function('f')(x)
            func = _eval(node.func, allowed)
            if not isinstance(func, sympy.FunctionClass):
                raise UnsafeExpression("call of a non-function")
        else:
            raise UnsafeExpression("call target")
        args = [_eval(a, allowed) for a in node.args]
        if func is sympy.factorial and args and getattr(args[0], "is_Number", False) and abs(args[0]) > MAX_EXPONENT:
            raise UnsafeExpression("factorial too large")
        return func(*args)
    raise UnsafeExpression(type(node).__name__)


def parse_untrusted(expr: str):
    """The sympy value PRM800K's ``_sympy_parse(expr)`` would produce, computed without ``eval``.

    ``^`` becomes ``**`` as in PRM800K; tokens are rewritten by sympy's ``stringify_expr`` with the paper's
    transformations; the rewritten code is parsed with ``ast.parse`` (which does not execute anything) and
    interpreted under the whitelist described in the module docstring.

    Raises:
        UnsafeExpression: syntax or names outside the whitelist, or a power/factorial above ``MAX_EXPONENT``.
        SyntaxError, TokenError, TypeError, ValueError...: text that sympy's tokenizer or the interpreter
            cannot handle (the paper's ``parse_expr`` fails on these too).
    """
    from sympy.parsing.sympy_parser import stringify_expr

    names, allowed, transformations = _namespace()
    code = stringify_expr(expr.replace("^", "**"), {}, names, transformations)
    return _eval(ast.parse(code.strip(), mode="eval"), allowed)
