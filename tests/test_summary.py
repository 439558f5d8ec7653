"""summary.json as a typed record: exact JSON round trips, the flat layout, one-line refusals."""

from __future__ import annotations

import json

import pytest

from ad.errors import UserError
from ad.evaluation.summary import SUMMARY_SCHEMA, RunSummary, load_summary, write_summary
from tests.factories import summary

# summary.json's keys before the record (schema 1, context_mode since renamed decoding): readers
# of the JSON (scripts, notebooks) keep working.
TOP_LEVEL = {
    "run", "checkpoint", "step", "label", "split", "family", "family_kwargs", "tasks",
    "num_tasks", "num_episodes", "num_seeds", "seed", "action_mode", "temperature", "decoding",
    "optimal_return", "random_return", "optimal_returns", "random_returns", "optimal_from",
    "per_episode", "first_episode_return", "last10_return", "last10_normalised", "episode_to_50",
    "episode_to_80", "normalised_at", "source", "warnings", "data_efficiency_ratio", "config",
    "versions", "compare",
}  # fmt: skip
CURVE = {
    "per_episode", "first_episode_return", "last10_return", "last10_normalised", "episode_to_50",
    "episode_to_80",
}  # fmt: skip
PER_EPISODE = {"mean", "ci_low", "ci_high", "iqm", "normalised_mean"}


def test_a_summary_round_trips_through_json_exactly(tmp_path):
    record = summary(1, 0, 0.7)
    data = json.loads(json.dumps(record.to_json()))
    assert RunSummary.from_json(data, "here") == record
    (tmp_path / "eval").mkdir()
    path = write_summary(tmp_path / "eval", record)
    assert path == tmp_path / "eval" / "summary.json"
    assert load_summary(path) == record == load_summary(tmp_path / "eval")  # file or folder
    # the layout stays flat, with today's keys, plus the schema version
    assert data["schema"] == SUMMARY_SCHEMA and set(data) == TOP_LEVEL | {"schema"}
    assert set(data["per_episode"]) == PER_EPISODE
    assert set(data["source"]) == CURVE | {
        "num_runs",
        "num_streams",
        "num_episodes",
        "num_tasks",
        "streams_per_learner",
    }
    (compared,) = data["compare"]
    assert set(compared) == CURVE | {
        "label", "run", "checkpoint", "normalised_at", "data_efficiency_ratio",
    }  # fmt: skip
    no_source = RunSummary.from_json({**data, "source": None, "compare": []}, "here")
    assert no_source.source is None and no_source.compare == []


def test_a_run_lists_itself_as_a_compared_run_with_its_own_numbers():
    record = summary(0, 0, 0.5)
    compared = record.compared()
    assert (compared.label, compared.run, compared.per_episode) == (
        record.label,
        record.run,
        record.per_episode,
    )
    assert compared.curve_fields() == record.curve_fields()


def _bad_file(kind: str, tmp_path) -> object:
    """A path to load_summary for each kind of bad input."""
    path = tmp_path / "eval" / "summary.json"
    path.parent.mkdir()
    data = summary(0, 0, 0.5).to_json()
    if kind == "missing":
        return tmp_path / "nowhere"
    if kind == "not json":
        path.write_text("{not json")
    elif kind == "schema 1":  # what ad-eval wrote before the record: no schema key
        data.pop("schema")
        data["context_mode"] = data.pop("decoding")
        path.write_text(json.dumps(data))
    elif kind == "newer schema":
        path.write_text(json.dumps({**data, "schema": SUMMARY_SCHEMA + 1}))
    elif kind == "not a summary":  # an aggregate.json passed as a summary
        path.write_text(json.dumps({"family": "DarkRoom", "ad": {}, "num_runs": 2}))
    elif kind == "not an object":
        path.write_text("[1, 2]")
    elif kind == "damaged":
        data.pop("tasks")
        data["source"].pop("num_streams")
        path.write_text(json.dumps(data))
    elif kind == "damaged curve":
        data["compare"][0]["per_episode"].pop("iqm")
        path.write_text(json.dumps(data))
    return path.parent


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "nowhere does not exist; pass ad-eval's summary.json or its folder"),
        ("not json", "summary.json is not valid JSON; re-run ad-eval to rewrite it"),
        ("schema 1", r"written by an older ad-eval \(schema 1, .*\); re-run ad-eval to rewrite"),
        ("newer schema", r"written by another ad-eval \(schema 3, this one reads 2\); re-run"),
        ("not a summary", r"not an ad-eval summary.json \(no schema or per_episode\); pass"),
        ("not an object", "not an ad-eval summary.json"),
        ("damaged", "summary.json lacks tasks; it is damaged, re-run ad-eval"),
        ("damaged curve", r"compare\[0\]: per_episode lacks iqm; it is damaged"),
    ],
)
def test_a_bad_summary_is_a_one_line_user_error(kind, message, tmp_path):
    with pytest.raises(UserError, match=message) as info:
        load_summary(_bad_file(kind, tmp_path))
    assert "\n" not in str(info.value)
