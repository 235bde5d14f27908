"""The static check: syntax errors, imports outside the allow-list, and names that reach the interpreter."""

from __future__ import annotations

import pytest

from sandbox import Outcome, check_source

ALLOWED = ("math", "numpy", "jax", "optax")

SEED = '''
import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    """One trial of a learner."""
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    prediction_error = reward - q[choice]
    q = q.at[choice].add(params["alpha"] * prediction_error)
    print(f"{float(q[0]):.3f}")
    return params["beta"] * q, state.at[:2].set(q)
'''


def test_the_seed_model_passes() -> None:
    assert check_source(SEED, ALLOWED) is None


def test_syntax_error_names_the_line() -> None:
    rejection = check_source("def agent(x):\n    return (x\n", ALLOWED)
    assert rejection.outcome is Outcome.SYNTAX_ERROR
    assert "line 2" in rejection.message


@pytest.mark.parametrize("source, expected", [
    ("import os\n", "import of 'os' is not allowed; this task allows: math, numpy, jax, optax"),
    ("from subprocess import run\n", "import of 'subprocess' is not allowed"),
    ("import numpy.ctypeslib\n", "'ctypeslib' is off-limits"),
    ("from jax import _src\n", "importing '_src' from 'jax' is not allowed"),
    ("from numpy import *\n", "import *' is not allowed"),
    ("from . import score\n", "relative imports are not allowed"),
    ("x = __import__('os')\n", "use of '__import__' is not allowed"),
    ("eval('1')\n", "use of 'eval' is not allowed"),
    ("exec('x = 1')\n", "use of 'exec' is not allowed"),
    ("f = open('/etc/passwd')\n", "use of 'open' is not allowed"),
    ("c = compile('1', 'f', 'eval')\n", "use of 'compile' is not allowed"),
    ("g = globals()\n", "use of 'globals' is not allowed"),
    ("import importlib\n", "import of 'importlib' is not allowed"),
    ("x = (1).__class__\n", "dunder attribute '.__class__'"),
    ("x = ().__class__.__bases__[0].__subclasses__()\n", "'.__subclasses__'"),
    ("def f():\n    pass\nc = f.__globals__\n", "'.__globals__'"),
    ("import jax\nx = jax._src\n", "private or dunder attribute '._src'"),
    ("x = getattr(1, '__class__')\n", "getattr() is allowed only with a literal, public attribute name"),
    ("n = 'x'\nx = getattr(1, n)\n", "getattr() is allowed only with a literal, public attribute name"),
    ("g = getattr\n", "'getattr' may only be called directly"),
    ("setattr(1, 'real', 2)\n", "use of 'setattr' is not allowed"),
    ("import numpy as np\nnp.sum = len\n", "assigning to an attribute of the imported module 'np'"),
    ("import jax\njax.numpy.sum = len\n", "assigning to an attribute of the imported module 'jax'"),
    ("import numpy as np\nx = np.load('a.npy', allow_pickle=True)\n", "access to '.load' is not allowed"),
    ("import numpy as np\nnp.ctypeslib\n", "access to '.ctypeslib' is not allowed"),
    ("def f(g):\n    return g.gi_frame.f_back\n", "'.gi_frame'"),
    ("s = '{0.__class__}'.format(1)\n", "string constants containing '__'"),
    ("x = __builtins__\n", "use of '__builtins__'"),
    ("breakpoint()\n", "use of 'breakpoint'"),
])
def test_forbidden_source_is_rejected_with_its_line(source: str, expected: str) -> None:
    rejection = check_source(source, ALLOWED)
    assert rejection is not None, source
    assert rejection.outcome is Outcome.FORBIDDEN
    assert expected in rejection.message
    assert rejection.message.startswith("line ")


def test_allowed_imports_and_getattr_with_a_literal_pass() -> None:
    source = ("import math\nimport numpy as np\nimport optax\nfrom jax import numpy as jnp, lax\n"
              "def agent(x):\n    y = getattr(x, 'shape', None)\n    d = {}\n    d.update(a=1)\n"
              "    return math.exp(np.sum(jnp.ones(2)))\n")
    assert check_source(source, ALLOWED) is None


def test_the_wildcard_turns_the_check_off_but_not_the_parser() -> None:
    assert check_source("import os\nos.system('true')\nx = ().__class__\n", ("*",)) is None
    assert check_source("def f(:\n", ("*",)).outcome is Outcome.SYNTAX_ERROR


def test_several_problems_are_all_named() -> None:
    rejection = check_source("import os\nimport sys\n", ALLOWED)
    assert "line 1" in rejection.message and "line 2" in rejection.message
