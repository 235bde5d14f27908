"""What the mutator knows about the functions a candidate calls."""

from __future__ import annotations

import ast

# Calls whose positional arguments are the same kind of value as the result (elementwise maths).
ELEMENTWISE = frozenset(
    "jnp.exp jnp.log jnp.log1p jnp.expm1 jnp.tanh jnp.sqrt jnp.abs jnp.square jnp.sin jnp.cos jnp.maximum "
    "jnp.minimum jnp.clip jnp.power jnp.sign jnp.logaddexp jnp.exp2 jnp.log2 jnp.reciprocal jnp.negative "
    "jax.nn.sigmoid jax.nn.relu jax.nn.softplus jax.nn.tanh jax.nn.log_sigmoid jax.nn.silu jax.nn.softmax "
    "jax.nn.log_softmax jax.scipy.special.expit jax.scipy.special.logit jax.scipy.special.erf "
    "math.exp math.log math.tanh math.sqrt np.exp np.log np.tanh".split()
)
# Calls that reduce an array to a scalar when given one positional argument and no keywords.
REDUCTIONS = frozenset("jnp.sum jnp.mean jnp.max jnp.min jnp.prod jnp.std jnp.var jax.nn.logsumexp".split())
# `x.at[i].<method>(value)`: the value is a float; the index is not.
AT_METHODS = frozenset({"add", "set", "multiply", "mul", "divide", "min", "max", "power", "subtract"})
INT_CALLS = frozenset({"len", "int", "range", "jnp.argmax", "jnp.argmin", "round"})
INT_ATTRIBUTES = frozenset({"shape", "ndim", "size"})


def dotted_name(node: ast.AST) -> str | None:
    """Returns "jnp.exp" for the expression `jnp.exp`, "f" for `f`, and None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted_name(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def is_at_update(call: ast.Call) -> bool:
    """Returns whether `call` is an indexed update such as `x.at[i].add(v)`."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in AT_METHODS
        and isinstance(func.value, ast.Subscript)
        and isinstance(func.value.value, ast.Attribute)
        and func.value.value.attr == "at"
    )
