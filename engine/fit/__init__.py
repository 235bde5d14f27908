"""The engine's inner loops: fitting a candidate's free parameters to data.

Tasks import only the names below. A candidate declares its parameters in the first statement of its evolved
function, `PARAMS = {"alpha": (0.0, 1.0), ...}`; `read_params` reads them into a `ParamSpec`. Every fitter
works in the unconstrained space of `ParamSpec.constrain` (`low + (high - low) * sigmoid(z)`), and batches its
random restarts (and groups, and chains, and simulations) so that each candidate is compiled once.

    spec = read_params(candidate_source, "agent")
    result = fit_maximum_likelihood(neg_log_likelihood, spec, train, held_out=test, optimizer="lbfgs")
    score = -result.held_out_neg_log_likelihood / n_test_trials

Inner loops:
    fit_maximum_likelihood   pooled maximum likelihood; adam, adabelief, lbfgs (default adam), random restarts
    fit_per_group            the same, one parameter set per group (e.g. subject), all groups in one program
                             (both are `fit(..., grouped=...)`, whose result has a group axis)
    fit_bayesian             posterior samples (numpyro NUTS or SVI) and the held-out log pointwise predictive density
    fit_simulation_based     SMC-ABC on summary statistics for simulators without a tractable likelihood
    fit_spiking              threshold-and-reset simulators (spiking neurons): L-BFGS through the spike-forced
                             simulation from batched restarts, then a local search of the task's score
    simulate_spiking         the Euler threshold-and-reset simulator those fits and their scores use
    ddm.wiener_log_density   the drift-diffusion first-passage-time density (Navarro & Fuss 2009), for likelihoods

Verification:
    parameter_recovery       simulate around each group's fit, refit, correlate: the loop every task's verify runs
    refit_by_likelihood      its refit by fit_per_group, for tasks with a likelihood
    posterior_predictive     replicate data sets at the fitted parameters, for predictive figures
    posterior_summary        NUTS quantiles of the parameters, for `discover verify --posterior`
    combine_posteriors       per-group posterior entries merged into one record
    perturbed_parameters     a parameter set near a fit, to simulate parameter-recovery data from
    recovery_table           Pearson r of generating vs recovered values, per parameter (circular for angles)
    circular_correlation     the correlation recovery_table uses for an angle
    failed_sets              which recovered parameter sets are failed refits (left out of recovery_table)
"""

import importlib
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it. The submodules load on first use, so that what needs only `read_params`
# (the engine's own process, the command line) does not import JAX and numpyro, and a scoring worker imports only
# the fitters its task uses.
_HOMES = {
    "SimulationFitResult": "abc", "fit_simulation_based": "abc",
    "BayesianFitResult": "bayes", "fit_bayesian": "bayes", "posterior_summary": "bayes", "combine_posteriors": "bayes",
    "wiener_log_density": "ddm", "wiener_upper_probability": "ddm",
    "FitError": "errors",
    "FitResult": "gradient", "GroupFitResult": "gradient", "NegLogLikelihood": "gradient", "fit": "gradient",
    "fit_maximum_likelihood": "gradient", "fit_per_group": "gradient", "pad_to": "gradient",
    "OPTIMIZERS": "optimizers",
    "ParamSpec": "params", "read_params": "params",
    "circular_correlation": "recovery", "failed_sets": "recovery", "perturbed_parameters": "recovery",
    "recovery_table": "recovery", "Recovery": "recovery", "parameter_recovery": "recovery",
    "posterior_predictive": "recovery", "refit_by_likelihood": "recovery",
    "SpikingFitResult": "spiking", "fit_spiking": "spiking", "simulate_spiking": "spiking", "window_sum": "spiking",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


if TYPE_CHECKING:  # for type checkers and editors: the same names, imported eagerly
    from engine.fit.abc import SimulationFitResult, fit_simulation_based
    from engine.fit.bayes import BayesianFitResult, combine_posteriors, fit_bayesian, posterior_summary
    from engine.fit.ddm import wiener_log_density, wiener_upper_probability
    from engine.fit.errors import FitError
    from engine.fit.gradient import (FitResult, GroupFitResult, NegLogLikelihood, fit, fit_maximum_likelihood,
                                     fit_per_group, pad_to)
    from engine.fit.optimizers import OPTIMIZERS
    from engine.fit.params import ParamSpec, read_params
    from engine.fit.recovery import (Recovery, circular_correlation, failed_sets, parameter_recovery,
                                     perturbed_parameters, posterior_predictive, recovery_table, refit_by_likelihood)
    from engine.fit.spiking import SpikingFitResult, fit_spiking, simulate_spiking, window_sum

__all__ = [
    "OPTIMIZERS",
    "BayesianFitResult",
    "FitError",
    "FitResult",
    "GroupFitResult",
    "NegLogLikelihood",
    "ParamSpec",
    "SimulationFitResult",
    "SpikingFitResult",
    "fit",
    "fit_bayesian",
    "fit_maximum_likelihood",
    "fit_per_group",
    "pad_to",
    "fit_simulation_based",
    "fit_spiking",
    "perturbed_parameters",
    "read_params",
    "simulate_spiking",
    "window_sum",
    "recovery_table",
    "Recovery",
    "parameter_recovery",
    "posterior_predictive",
    "posterior_summary",
    "combine_posteriors",
    "refit_by_likelihood",
    "failed_sets",
    "circular_correlation",
    "wiener_log_density",
    "wiener_upper_probability",
]
