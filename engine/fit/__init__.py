"""The engine's inner loops: fitting a candidate's free parameters to data.

Tasks import only the names below. Parameters are declared by the candidate (`read_params`), optimizers work in
unconstrained space (`ParamSpec.constrain`), and every fitter batches its random restarts in one compiled program.
"""

from engine.fit.abc import SimulationFitResult, fit_simulation_based
from engine.fit.bayes import BayesianFitResult, fit_bayesian
from engine.fit.errors import FitError
from engine.fit.gradient import (
    FitResult,
    GroupFitResult,
    NegLogLikelihood,
    fit_maximum_likelihood,
    fit_per_group,
)
from engine.fit.loops import OPTIMIZERS
from engine.fit.params import ParamSpec, read_params

__all__ = [
    "OPTIMIZERS",
    "BayesianFitResult",
    "FitError",
    "FitResult",
    "GroupFitResult",
    "NegLogLikelihood",
    "fit_bayesian",
    "ParamSpec",
    "SimulationFitResult",
    "fit_maximum_likelihood",
    "fit_per_group",
    "fit_simulation_based",
    "read_params",
]
