"""summary.json, the record of one evaluation: typed, versioned, read and written in one place.

``ad-eval`` writes one :class:`RunSummary` per evaluated family (and one per compared run, in its
``compare-<i>-<run>/`` folder) and returns them (``ad-run``'s report reads those);
``--aggregate``, ``--figure`` and the scripts read the files back with :func:`load_summary`. The
records hold plain Python values (numpy converted once,
with ``ad.utils.to_json``), so that ``to_json`` and ``from_json`` are exact inverses. The JSON
is flat, as before the record existed, plus ``"schema"``: files without it are schema 1 and are
refused with a line saying to re-run ``ad-eval``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ad.errors import UserError
from ad.utils import atomic_write_json

# 2: the typed record, with "schema" (1: the same keys without it, and context_mode, not decoding).
SUMMARY_SCHEMA = 2
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True, kw_only=True)
class PerEpisode:
    """Per-episode curves (E,) over the rows (task x seed, or source streams).

    Attributes:
        mean: mean return.
        ci_low, ci_high: 95% bootstrap interval of the mean (resampling tasks where they are
            equally represented, else rows).
        iqm: interquartile mean of the returns.
        normalised_mean: mean normalised score (random 0, optimal 1); None where no task has
            a reference to normalise by.
    """

    mean: list[float]
    ci_low: list[float]
    ci_high: list[float]
    iqm: list[float]
    normalised_mean: list[float | None] | None


@dataclass(frozen=True, kw_only=True)
class CurveStats:
    """A return curve's statistics (``ad.evaluation.metrics.curve_stats``).

    Attributes:
        per_episode: the curves.
        first_episode_return, last10_return: mean return in episode 1 and over the last 10.
        last10_normalised: mean normalised score over the last 10 episodes (None: no reference).
        episode_to_50, episode_to_80: first 1-based episode at which the trailing 5-episode mean
            of the normalised curve reaches 50% / 80% (None: never).
    """

    per_episode: PerEpisode
    first_episode_return: float
    last10_return: float
    last10_normalised: float | None
    episode_to_50: int | None
    episode_to_80: int | None

    def curve_fields(self) -> dict[str, Any]:
        """This record's :class:`CurveStats` fields only, to build a record that extends it."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(CurveStats)}


@dataclass(frozen=True, kw_only=True)
class SourceCurve(CurveStats):
    """The source algorithm learning the evaluated tasks from scratch, one sample per stream
    (``ad.evaluation.references.source_summary``); ``num_episodes``: the shortest stream's."""

    num_runs: int
    num_streams: int
    num_episodes: int
    num_tasks: int
    # streams that fed one learner of the source (PPO's n_envs; 1 for UCB); None: unknown
    streams_per_learner: int | None = None

    @property
    def learner_episode_to_80(self) -> int | None:
        """The episode of the learner's own experience (all its streams) at which the mean
        per-stream curve first reaches 80%: per-stream episodes x streams per learner."""
        if self.episode_to_80 is None or self.streams_per_learner is None:
            return None
        return self.episode_to_80 * self.streams_per_learner


@dataclass(frozen=True, kw_only=True)
class ComparedRun(CurveStats):
    """A compared run (ED, another size) as the main run's summary lists it in ``compare``;
    its own summary.json lies in ``compare-<i>-<run>/``."""

    label: str
    run: str
    checkpoint: str
    normalised_at: dict[str, float | None]
    data_efficiency_ratio: float | None


@dataclass(frozen=True, kw_only=True)
class RunSummary(CurveStats):
    """One evaluated run in one family: ``summary.json``.

    Attributes:
        run, checkpoint, step, label: what was evaluated (``label``: e.g. "AD (run)").
        split, family, family_kwargs, tasks, num_tasks: on what ("test", "validation" or
            "train" tasks).
        num_episodes, num_seeds, seed, action_mode, temperature, decoding: how (``eval.*``).
        optimal_return, random_return: means over the tasks of ``optimal_returns`` and
            ``random_returns``, each task's references (None: unknown).
        optimal_from: "family", or "source_best" when the family has no optimal return.
        normalised_at: 1-based episode (a string) -> mean normalised score there.
        source: the source algorithm's curve on the same tasks (None: no histories).
        warnings: lines the report shows first.
        data_efficiency_ratio: episodes to 80% of the model over those of the source.
        compare: the runs evaluated beside this one on the same tasks and seeds.
        config, versions: the resolved config and the package versions.
    """

    run: str
    checkpoint: str
    step: int
    label: str
    split: str
    family: str
    family_kwargs: dict[str, Any]
    tasks: list[Any]
    num_tasks: int
    num_episodes: int
    num_seeds: int
    seed: int
    action_mode: str
    temperature: float
    decoding: str
    optimal_return: float | None
    random_return: float
    optimal_returns: list[float | None]
    random_returns: list[float]
    optimal_from: str
    normalised_at: dict[str, float | None]
    source: SourceCurve | None
    warnings: list[str]
    data_efficiency_ratio: float | None
    compare: list[ComparedRun]
    config: dict[str, Any]
    versions: dict[str, str]

    def compared(self) -> ComparedRun:
        """This run as another run's summary lists it in ``compare``."""
        return ComparedRun(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(ComparedRun)}
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object of summary.json: the fields, nested records as objects, and
        ``"schema"``."""
        return {"schema": SUMMARY_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunSummary:
        """The record of a summary.json's object; ``where`` names it in errors.

        Raises:
            UserError: not a summary, another schema version (a file without one: 1), or a
                missing field.
        """
        if not isinstance(data, dict) or not ("schema" in data or "per_episode" in data):
            raise UserError(
                f"{where} is not an ad-eval summary.json (no schema or per_episode); pass the "
                "summary.json that ad-eval writes, or its folder"
            )
        schema = data.get("schema", 1)
        if schema != SUMMARY_SCHEMA:
            older = isinstance(schema, int) and schema < SUMMARY_SCHEMA
            raise UserError(
                f"{where} was written by {'an older' if older else 'another'} ad-eval (schema "
                f"{schema!r}, this one reads {SUMMARY_SCHEMA}); re-run ad-eval to rewrite it"
            )
        values = _curve_values(cls, data, where)
        source, compare = values["source"], values["compare"]
        if not isinstance(compare, list):
            raise UserError(f"{where}: compare is not a list; it is damaged, re-run ad-eval")
        if source is not None:
            values["source"] = SourceCurve(**_curve_values(SourceCurve, source, f"{where}: source"))
        values["compare"] = [
            ComparedRun(**_curve_values(ComparedRun, c, f"{where}: compare[{i}]"))
            for i, c in enumerate(compare)
        ]
        return cls(**values)


def _values(cls: type, data: Any, where: str) -> dict[str, Any]:
    """The values of ``cls``'s fields in the JSON object ``data`` (other keys are ignored; a
    field with a default may be absent: it was added after the file was written)."""
    if not isinstance(data, dict):
        raise UserError(f"{where} is not a JSON object; it is damaged, re-run ad-eval")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields if f.name in data or f.default is dataclasses.MISSING]
    missing = [name for name in names if name not in data]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}; it is damaged, re-run ad-eval")
    return {name: data[name] for name in names}


def _curve_values(cls: type[CurveStats], data: Any, where: str) -> dict[str, Any]:
    """``_values`` of a :class:`CurveStats` record, its ``per_episode`` made a record."""
    values = _values(cls, data, where)
    per_episode = _values(PerEpisode, values["per_episode"], f"{where}: per_episode")
    return {**values, "per_episode": PerEpisode(**per_episode)}


def load_summary(path: str | Path) -> RunSummary:
    """Read a ``summary.json``, given as the file or the evaluation folder that holds it.

    Raises:
        UserError: a missing file, invalid JSON, or what ``RunSummary.from_json`` refuses.
    """
    path = Path(path)
    path = path / SUMMARY_FILE if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{path} does not exist; pass ad-eval's summary.json or its folder"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON; re-run ad-eval to rewrite it") from None
    return RunSummary.from_json(data, str(path))


def write_summary(folder: str | Path, summary: RunSummary) -> Path:
    """Write ``summary`` as ``folder``/summary.json, atomically; returns the path."""
    path = Path(folder) / SUMMARY_FILE
    atomic_write_json(path, summary.to_json())
    return path
