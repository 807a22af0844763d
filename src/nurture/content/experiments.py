"""Reads a step's `experiment:` block (variants, holdout, metric, stopping rule, promotion, a pinned
winner) into frozen types, each problem with its file:line and a fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from yaml.nodes import Node, ScalarNode, SequenceNode

from nurture.content.delays import DELAY_FORMS, DelayError, parse_delay
from nurture.content.nodes import KEY_PATTERN, NodeReader
from nurture.domain.experiments import DEFAULT_WINDOW, HOLDOUT, Experiment, StoppingRule, Variant
from nurture.domain.model import Sequence
from nurture.domain.problems import ContentProblem
from nurture.domain.reasons import KNOWN_EXIT_EVENTS

EXPERIMENT_FIELDS = {"key", "variants", "metric", "window", "holdout", "promote", "winner", "stop"}
VARIANT_FIELDS = {"key", "weight", "subject", "preheader", "discreet_subject", "discreet_preheader",
                  "template"}
STOP_FIELDS = {"min_people", "min_duration", "p_best", "max_expected_loss"}
MIN_VARIANTS, MAX_VARIANTS = 2, 4
MAX_HOLDOUT = 0.5
_PERCENT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")


def _number(reader: NodeReader, node: Node, what: str, fix: str) -> float | None:
    """A plain number, or a percentage ("10%") as a share."""
    raw = str(node.value).strip() if isinstance(node, ScalarNode) else ""
    percent = _PERCENT.match(raw)
    try:
        return float(percent.group(1)) / 100 if percent else float(raw)
    except ValueError:
        reader.problem(node, f"{what} must be a number, not '{raw}'", fix)
        return None


def _delay(reader: NodeReader, node: Node, what: str) -> timedelta | None:
    raw = str(node.value).strip() if isinstance(node, ScalarNode) else ""
    try:
        return parse_delay(raw)
    except DelayError:
        reader.problem(node, f"{what} '{raw}' is not a duration",
                       f"write a whole number with a unit (m, h, d, w), e.g. {DELAY_FORMS}")
        return None


def _read_variant(reader: NodeReader, node: Node, what: str) -> Variant | None:
    fields = reader.mapping(node, what, VARIANT_FIELDS)
    if not fields:
        return None
    key = reader.text(fields, "key", what, required=True, parent=node)
    if key is not None and (not KEY_PATTERN.match(key) or key == HOLDOUT):
        reader.problem(fields["key"][1], f"'{key}' cannot name a variant",
                       "use a short key of lowercase letters, digits and dashes, e.g. a, b, "
                       "warmer-subject (holdout is taken)")
        key = None
    what = f"variant '{key}' of {what.split(' of ', 1)[-1]}" if key else what
    weight = 1.0
    if "weight" in fields:
        found = _number(reader, fields["weight"][1], f"the weight of {what}",
                        "give a positive number; weights are shares of each other, e.g. 50 and 50")
        if found is not None and found <= 0:
            reader.problem(fields["weight"][1], f"the weight of {what} must be above 0",
                           "give a positive number, or remove the variant")
            found = None
        weight = found if found is not None else weight
    texts = {name: reader.text(fields, name, what, required=False, parent=node)
             for name in ("subject", "preheader", "discreet_subject", "discreet_preheader",
                          "template")}
    if key is None:
        return None
    return Variant(key=key, weight=weight, line=node.start_mark.line + 1, **texts)


def _read_variants(reader: NodeReader, node: Node, what: str) -> list[Variant]:
    if not isinstance(node, SequenceNode) or not MIN_VARIANTS <= len(node.value) <= MAX_VARIANTS:
        reader.problem(node, f"{what} needs {MIN_VARIANTS} to {MAX_VARIANTS} variants",
                       "list them under `variants:`, each starting with `- key: ...`; a variant "
                       "that changes nothing is the step as written (the control)")
        if not isinstance(node, SequenceNode):
            return []
    variants: list[Variant] = []
    for item in node.value:
        variant = _read_variant(reader, item, f"a variant of {what}")
        if variant is None:
            continue
        if any(other.key == variant.key for other in variants):
            reader.problem(item, f"variant key '{variant.key}' is used twice in {what}",
                           "give every variant its own key")
            continue
        variants.append(variant)
    return variants


def _read_share(reader: NodeReader, node: Node, what: str) -> float:
    share = _number(reader, node, f"the holdout of {what}", "write a share such as 10% or 0.1")
    if share is None:
        return 0.0
    if not 0 <= share <= MAX_HOLDOUT:
        reader.problem(node, f"the holdout of {what} is {share:g}, outside 0 to {MAX_HOLDOUT:g}",
                       "hold out at most half of the people, e.g. `holdout: 10%`")
        return 0.0
    return share


def _read_stop(reader: NodeReader, node: Node, what: str) -> StoppingRule:
    fields = reader.mapping(node, f"the stop rule of {what}", STOP_FIELDS)
    rule = StoppingRule()
    values: dict[str, Any] = {}
    if "min_people" in fields:
        count = _number(reader, fields["min_people"][1], "min_people", "write a whole number, e.g. 1000")
        if count is not None and (count < 1 or count != int(count)):
            reader.problem(fields["min_people"][1], "min_people must be a whole number above 0",
                           "write a whole number, e.g. 1000")
        elif count is not None:
            values["min_exposed"] = int(count)
    if "min_duration" in fields:
        values["min_duration"] = _delay(reader, fields["min_duration"][1], "min_duration") or \
            rule.min_duration
    for name, low, high in (("p_best", 0.5, 1.0), ("max_expected_loss", 0.0, 1.0)):
        if name in fields:
            found = _number(reader, fields[name][1], name, "write a share such as 0.95 or 0.1%")
            if found is not None and not low < found < high:
                reader.problem(fields[name][1], f"{name} must be between {low:g} and {high:g}",
                               "write a share such as 0.95 (p_best), or 0.00005 for "
                               "max_expected_loss (a share of the leader's own rate)")
            elif found is not None:
                values[name] = found
    return StoppingRule(**values)


def _read_choice(reader: NodeReader, fields: dict[str, tuple[Node, Node]], name: str,
                 choices: frozenset[str], default: str, fix: str) -> str:
    if name not in fields:
        return default
    node = fields[name][1]
    value = str(node.value).strip() if isinstance(node, ScalarNode) else ""
    if value not in choices:
        reader.problem(node, f"`{name}: {value}` is not one of {', '.join(sorted(choices))}", fix)
        return default
    return value


def read_experiment(reader: NodeReader, node: Node, step_key: str) -> Experiment | None:
    """The experiment of step `step_key`; None (with the problems) when it cannot run."""
    what = f"the experiment of step '{step_key}'"
    fields = reader.mapping(node, what, EXPERIMENT_FIELDS)
    if not fields:
        return None
    key = reader.text(fields, "key", what, required=True, parent=node)
    if key is not None and not KEY_PATTERN.match(key):
        reader.problem(fields["key"][1], f"experiment key '{key}' is not a valid key",
                       "use lowercase letters, digits and dashes, e.g. consult-subject-2026-12; "
                       "a new key starts a new experiment, with people assigned afresh")
        key = None
    variants = _read_variants(reader, fields["variants"][1], what) if "variants" in fields else []
    if "variants" not in fields:
        reader.problem(node, f"{what} has no variants", "add `variants:` with 2 to 4 variants")
    metric = _read_choice(reader, fields, "metric", KNOWN_EXIT_EVENTS, "consult_booked",
                          "count one of the events people report, e.g. `metric: consult_booked`")
    promote = _read_choice(reader, fields, "promote", frozenset({"auto", "manual"}), "manual",
                           "write `promote: auto` to send the winner to everyone assigned after "
                           "the decision, or `promote: manual` to decide by pinning `winner:`")
    window = _delay(reader, fields["window"][1], "the window") if "window" in fields else None
    holdout = _read_share(reader, fields["holdout"][1], what) if "holdout" in fields else 0.0
    stop = _read_stop(reader, fields["stop"][1], what) if "stop" in fields else StoppingRule()
    winner = reader.text(fields, "winner", what, required=False, parent=node)
    if winner is not None and winner not in {variant.key for variant in variants}:
        reader.problem(fields["winner"][1], f"the pinned winner '{winner}' is not a variant of {what}",
                       f"name one of: {', '.join(v.key for v in variants) or 'its variants'}, "
                       "or remove `winner:`")
        winner = None
    if key is None or not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        return None
    return Experiment(key=key, variants=tuple(variants), metric=metric,
                      window=window or DEFAULT_WINDOW, holdout=holdout, promote=promote,
                      winner=winner, stop=stop, line=node.start_mark.line + 1)


def check_experiments(sequences: Mapping[str, Sequence]) -> list[ContentProblem]:
    """Across the content: an experiment key names one experiment only, since people are
    assigned by it."""
    problems: list[ContentProblem] = []
    seen: dict[str, tuple[str, str]] = {}
    for key in sorted(sequences):
        sequence = sequences[key]
        for step in sequence.steps:
            experiment = step.experiment
            if experiment is None:
                continue
            if experiment.key in seen:
                first = seen[experiment.key]
                problems.append(ContentProblem(
                    sequence.source, experiment.line,
                    f"experiment key '{experiment.key}' is also used by step '{first[1]}' of "
                    f"'{first[0]}'", "give each experiment its own key"))
            seen.setdefault(experiment.key, (sequence.key, step.key))
    return problems
