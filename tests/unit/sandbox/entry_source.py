"""Test entry: returns the candidate's `__source__` as a detail."""


def score(candidate, **_):
    return {"score": float(candidate.agent(1.0)), "source": candidate.__source__}
