"""Test entry: calls the candidate's `agent(x)` and returns its value as the score."""


def score(candidate, x=1.0, **_):
    value = candidate.agent(x)
    if isinstance(value, dict):
        return value
    return {"score": value, "label": "test"}
