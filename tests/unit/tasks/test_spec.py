from pathlib import Path

import numpy as np
import pytest

from engine.task.errors import TaskSpecError
from engine.task.spec import data_hash, load_task

REPO = Path(__file__).resolve().parents[3]


def write_task(folder: Path, yaml_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "seed.py").write_text("def model(x, params):\n    PARAMS = {}\n    return x\n")
    (folder / "score.py").write_text("def score(candidate, train, heldout, seed=0):\n    return {'score': 1.0}\n")
    (folder / "data.py").write_text("def load():\n    return {'train': 1, 'selection': 2, 'test': 3}\n")
    path = folder / "task.yaml"
    path.write_text(yaml_text)
    return path


GOOD = "name: toy\nversion: 1\nsummary: A toy.\nevolve: seed.py:model\ninputs: {x: float32}\nscore: score.py:score\ndata: data.py:load\n"


def test_the_bandit_task_loads():
    task = load_task(REPO / "tasks/bandit/task.yaml")
    assert task.name == "bandit" and task.function_name == "agent"
    assert "def agent" in task.seed_source


def test_a_good_toy_task_loads_and_its_splits_come_back(tmp_path):
    task = load_task(write_task(tmp_path / "toy", GOOD))
    assert task.load_splits() == {"train": 1, "selection": 2, "test": 3}


def test_a_misspelt_function_names_what_exists(tmp_path):
    path = write_task(tmp_path / "toy", GOOD.replace("seed.py:model", "seed.py:modle"))
    with pytest.raises(TaskSpecError, match="seed.py has no function 'modle'. Found: model"):
        load_task(path)


def test_an_unknown_field_is_named(tmp_path):
    path = write_task(tmp_path / "toy", GOOD + "limits: {timeout: 3}\n")
    with pytest.raises(TaskSpecError, match="limits.timeout: Extra inputs are not permitted"):
        load_task(path)


def test_a_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(TaskSpecError, match="no such task file"):
        load_task(tmp_path / "absent.yaml")
    path = write_task(tmp_path / "toy", "name: [unclosed\n")
    with pytest.raises(TaskSpecError, match="not valid YAML"):
        load_task(path)


def test_data_hash_changes_with_any_value():
    a = {"train": {"x": np.arange(5)}, "selection": {"x": np.ones(2)}}
    b = {"train": {"x": np.arange(5)}, "selection": {"x": np.ones(2) * 2}}
    assert data_hash(a) == data_hash(dict(a)) != data_hash(b)


def test_seed_score_tolerance_defaults_to_the_deterministic_floor_and_must_be_positive(tmp_path):
    task = load_task(write_task(tmp_path / "toy", GOOD + "seed_score: 1.0\n"))
    assert task.file.seed_score_tolerance == 0.002
    path = write_task(tmp_path / "zero", GOOD + "seed_score: 1.0\nseed_score_tolerance: 0\n")
    with pytest.raises(TaskSpecError, match="seed_score_tolerance: Input should be greater than 0"):
        load_task(path)


@pytest.mark.parametrize("task_file", sorted((REPO / "tasks").glob("*/*.yaml")) + [REPO / "docs/example_task/task.yaml"],
                         ids=lambda path: str(path.relative_to(REPO)))
def test_every_bundled_task_states_its_seed_score_and_a_tolerance_sized_for_it(task_file):
    """The tolerance is each task's decision (its fitter's noise); `discover task check` checks its size."""
    import yaml

    raw = yaml.safe_load(task_file.read_text())
    assert isinstance(raw.get("seed_score"), float) and isinstance(raw.get("seed_score_tolerance"), float)
    assert 0 < raw["seed_score_tolerance"] < 2  # the neuron task's noisy fit needs the widest, 1.3


def test_score_options_are_read_and_may_not_take_the_scores_own_arguments(tmp_path):
    task = load_task(write_task(tmp_path / "toy", GOOD + "score_options: {restarts: 4, optimizer: lbfgs}\n"))
    assert task.file.score_options == {"restarts": 4, "optimizer": "lbfgs"}
    path = write_task(tmp_path / "bad", GOOD + "score_options: {seed: 3, restarts: 4}\n")
    with pytest.raises(TaskSpecError, match=r"\['seed'\] are the score function's own arguments"):
        load_task(path)
