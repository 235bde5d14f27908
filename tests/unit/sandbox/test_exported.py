"""A candidate exported in one place and rebuilt in another computes, batches and differentiates as the original,
and the loader refuses what is not a pure computation of the declared arguments."""

from __future__ import annotations

import base64
import struct
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox.exported import ExportRejected, export_candidate, forward_only, load_candidate, parse_input

SOURCE = '''
import jax
import jax.numpy as jnp


def agent(params, state, choice, reward):
    PARAMS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}
    q = state[:2]
    q = q.at[choice].add(params["alpha"] * (reward - q[choice]))
    return params["beta"] * q, state.at[:2].set(q)
'''
INPUTS = ["float32[8]", "int32", "float32"]
PARAMETERS = {"alpha": (0.0, 1.0), "beta": (0.0, 20.0)}


def module(source: str = SOURCE) -> types.ModuleType:
    candidate = types.ModuleType("candidate")
    exec(compile(source, "candidate.py", "exec"), candidate.__dict__)
    return candidate


def exported(source: str = SOURCE, inputs=INPUTS, parameters=("alpha", "beta")) -> str:
    return export_candidate(module(source), function_name="agent", parameters=parameters, inputs=inputs)["exported"]


@pytest.fixture(scope="module")
def pair():
    return module().agent, load_candidate(exported(), function_name="agent", parameters=PARAMETERS, inputs=INPUTS)


def negative_log_likelihood(agent, params, choices, rewards):
    def one_session(session_choices, session_rewards):
        def step(state, trial):
            logits, state = agent(params, state, trial[0], trial[1])
            return state, logits

        _, logits = jax.lax.scan(step, jnp.zeros(8), (session_choices, session_rewards))
        log_p = jax.nn.log_softmax(logits[:-1])
        return jnp.sum(jnp.take_along_axis(log_p, session_choices[1:, None], axis=1))

    return -jnp.sum(jax.vmap(one_session)(choices, rewards))


def test_parse_input_reads_dtypes_sizes_and_names():
    assert parse_input("float32") == ("float32", ())
    assert parse_input("float32[8]") == ("float32", (8,))
    assert parse_input("int32[n_trials, 9]") == ("int32", ("n_trials", 9))
    for bad in ("float64x", "float32[8", "float32[batch]", "complex64[2]"):
        with pytest.raises(ValueError, match="input"):
            parse_input(bad)


@pytest.mark.slow
def test_values_and_both_derivatives_match_the_python_function_under_nested_vmap_and_scan(pair):
    agent, candidate = pair
    rng = np.random.default_rng(0)
    choices = jnp.asarray(rng.integers(0, 2, (5, 50)), jnp.int32)
    rewards = jnp.asarray(rng.integers(0, 2, (5, 50)), jnp.float32)
    params = {"alpha": jnp.linspace(0.1, 0.9, 4), "beta": jnp.linspace(1.0, 5.0, 4)}

    def reverse(function):
        return jax.jit(jax.vmap(jax.value_and_grad(lambda p: negative_log_likelihood(function, p, choices, rewards))))

    def forward(function):
        def value_and_grad(p):
            return jax.jacfwd(lambda x: (negative_log_likelihood(function, x, choices, rewards),) * 2, has_aux=True)(p)
        return jax.jit(jax.vmap(value_and_grad))

    def fused(function):  # forward mode with the results and tangents in one exported call, as the fitter does
        def value_and_grad(p):
            with forward_only():
                return jax.jacfwd(lambda x: (negative_log_likelihood(function, x, choices, rewards),) * 2,
                                  has_aux=True)(p)
        return jax.jit(jax.vmap(value_and_grad))

    for program in (reverse, forward, fused):
        expected, got = program(agent)(params), program(candidate)(params)
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
    # the fused form is one exported call per step where the other form makes two
    lowered = {name: program(candidate).lower(params).as_text() for name, program in (("forward", forward),
                                                                                    ("fused", fused))}
    assert lowered["fused"].count("func.func") < lowered["forward"].count("func.func")


@pytest.mark.slow
def test_a_model_without_a_reverse_derivative_still_fits_in_forward_mode():
    source = SOURCE.replace("    return params", "    q = q + 0.0 * jax.lax.while_loop(lambda c: c < 3.0, lambda c: c + 1.0, reward)\n"
                                                "    return params")
    candidate = load_candidate(exported(source), function_name="agent", parameters=PARAMETERS, inputs=INPUTS)
    rng = np.random.default_rng(1)
    choices = jnp.asarray(rng.integers(0, 2, (2, 20)), jnp.int32)
    rewards = jnp.asarray(rng.integers(0, 2, (2, 20)), jnp.float32)
    params = {"alpha": jnp.float32(0.3), "beta": jnp.float32(2.0)}
    gradient = jax.jacfwd(lambda p: negative_log_likelihood(candidate, p, choices, rewards))(params)
    assert np.isfinite(float(gradient["alpha"]))
    with pytest.raises(ValueError, match="reverse mode.*while_loop"):
        jax.grad(lambda p: negative_log_likelihood(candidate, p, choices, rewards))(params)


def test_the_callable_has_the_declared_parameters_and_the_original_output_structure(pair):
    _, candidate = pair
    assert candidate.PARAMS == PARAMETERS and candidate.__name__ == "agent"
    shapes = jax.eval_shape(candidate, {"alpha": 0.5, "beta": 1.0, "unused": 3.0}, jnp.zeros(8), 0, 1.0)
    assert [s.shape for s in shapes] == [(2,), (8,)]
    with pytest.raises(KeyError, match="beta"):
        candidate({"alpha": 0.5}, jnp.zeros(8), 0, 1.0)


@pytest.mark.slow
def test_symbolic_sizes_and_prng_keys_cross_the_boundary():
    source = '''
import jax
import jax.numpy as jnp


def agent(params, coherence, key):
    PARAMS = {"k": (0.0, 1.0)}
    noise = jax.random.normal(key, (coherence.shape[0], 3))
    return jnp.sum(params["k"] * coherence[:, None] + noise, axis=1), coherence > 0
'''
    inputs = ["float32[n]", "uint32[2]"]
    candidate = load_candidate(exported(source, inputs, ("k",)), function_name="agent", parameters={"k": (0.0, 1.0)},
                               inputs=inputs)
    original = module(source).agent
    for n in (3, 7):
        coherence = jnp.linspace(0.0, 1.0, n)
        key = jax.random.PRNGKey(n)
        for a, b in zip(original({"k": 0.3}, coherence, key), candidate({"k": 0.3}, coherence, key)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    batched = jax.vmap(lambda k: candidate({"k": 0.3}, jnp.ones(5), k)[0])(keys)
    assert batched.shape == (4, 5)


def permissive_exporter(names):
    """What a hostile candidate does to the exporter in its own process: switch off its custom-call check."""
    from jax import export

    original = export.export

    def exporter(function, **options):
        options["disabled_checks"] = [export.DisabledSafetyCheck.custom_call(name) for name in names]
        return original(function, **options)

    return original, exporter


def test_host_callbacks_and_unknown_kernels_never_reach_the_scorer():
    from jax import export

    callback = SOURCE.replace("    return params", "    q = q + jax.pure_callback(lambda x: x, jax.ShapeDtypeStruct("
                                                  "(), jnp.float32), q[0], vmap_method='sequential')\n"
                                                  "    return params")
    kernel = SOURCE.replace("    return params", "    q = steal(q)\n    return params") + """

@jax.custom_jvp
def steal(q):
    return jax.ffi.ffi_call("steal_data", jax.ShapeDtypeStruct((2,), jnp.float32), vmap_method="sequential")(q)


steal.defjvp(lambda primals, tangents: (steal(*primals), tangents[0]))
"""
    python_callbacks = ("xla_ffi_python_cpu_callback", "xla_python_cpu_callback",
                        "xla_ffi_partitioned_python_cpu_callback")
    original, exporter = permissive_exporter((*python_callbacks, "steal_data"))
    export.export = exporter
    try:
        # JAX does not export a host callback at all, even with its check off: tracing such a candidate fails
        with pytest.raises(NotImplementedError, match="host_callbacks"):
            export_candidate(module(callback), function_name="agent", parameters=("alpha", "beta"), inputs=INPUTS)
        # any other custom call (an arbitrary kernel linked into the process) serializes, and is refused on load:
        # the allow-list refuses callbacks by the same rule, whatever bytes a tracing process crafts
        blob = export_candidate(module(kernel), function_name="agent", parameters=("alpha", "beta"), inputs=INPUTS)
    finally:
        export.export = original
    with pytest.raises(ExportRejected, match="steal_data"):
        load_candidate(blob["exported"], function_name="agent", parameters=PARAMETERS, inputs=INPUTS)


def test_malformed_or_mismatched_computations_are_rejected():
    good = exported()
    with pytest.raises(ExportRejected, match="base64"):
        load_candidate("not base64 !", function_name="agent", parameters=PARAMETERS, inputs=INPUTS)
    with pytest.raises(ExportRejected, match="not a computation"):
        load_candidate(base64.b64encode(b"\x00\x00\x00\x02ab").decode(), function_name="agent",
                       parameters=PARAMETERS, inputs=INPUTS)
    garbage = b"".join(struct.pack("!I", len(part)) + part for part in (b"hello", b"", b"", b"{}"))
    with pytest.raises(ExportRejected, match="does not deserialize"):
        load_candidate(base64.b64encode(garbage).decode(), function_name="agent", parameters=PARAMETERS,
                       inputs=INPUTS)
    with pytest.raises(ExportRejected, match="arguments|argument"):  # declared parameters differ
        load_candidate(good, function_name="agent", parameters={"alpha": (0.0, 1.0), "gamma": (0.0, 1.0)},
                       inputs=INPUTS)
    with pytest.raises(ExportRejected, match="argument"):  # the task's inputs differ
        load_candidate(good, function_name="agent", parameters=PARAMETERS, inputs=["float32[4]", "int32", "float32"])


def test_a_cpu_only_tracing_sandbox_lowers_for_the_gpu_scorer():
    """GPU runs: the tracing stage has no GPU and lowers for "cuda"; what it exports passes the scorer's check."""
    blob = export_candidate(module(), function_name="agent", parameters=("alpha", "beta"), inputs=INPUTS,
                            platforms=("cuda",))["exported"]
    candidate = load_candidate(blob, function_name="agent", parameters=PARAMETERS, inputs=INPUTS)
    assert candidate._functions.primal.platforms == ("cuda",)
