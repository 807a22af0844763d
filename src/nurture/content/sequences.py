"""Loads sequence definitions from YAML into frozen types, reporting each problem with file:line and a fix."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node, SequenceNode

from nurture.content.delays import DELAY_FORMS, DelayError, parse_delay
from nurture.content.experiments import read_experiment
from nurture.content.nodes import KEY_PATTERN, NodeReader, read_flag
from nurture.domain.model import WEEKDAY_NAMES, Condition, SendWindow, Sequence, Step
from nurture.domain.problems import ContentProblem
from nurture.domain.reasons import KNOWN_EXIT_EVENTS, KNOWN_REASONS

SEQUENCE_FIELDS = {"key", "name", "window", "exit_on", "follow_up", "steps", "description"}
STEP_FIELDS = {
    "key",
    "delay",
    "template",
    "subject",
    "preheader",
    "discreet_subject",
    "discreet_preheader",
    "when",
    "asks_to_talk",
    "immediate",
    "experiment",
}
CONDITION_FIELDS = {"hesitations_any", "hesitations_all", "hesitations_none", "discreet", "locale_in"}
_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _read_days(reader: NodeReader, node: Node) -> frozenset[int] | None:
    chosen = set()
    ok = True
    for name, item in reader.string_list(node, "window days"):
        short = name.strip().lower()[:3]
        if short not in WEEKDAY_NAMES:
            reader.problem(item, f"'{name}' is not a day", "use mon, tue, wed, thu, fri, sat, sun")
            ok = False
        else:
            chosen.add(WEEKDAY_NAMES.index(short))
    if not chosen and ok:
        reader.problem(node, "the window has no days", "list at least one day")
        ok = False
    return frozenset(chosen) if ok else None


def _read_hours(reader: NodeReader, node: Node) -> tuple[time, time] | None:
    match = _HOURS.match(str(getattr(node, "value", "")).strip())
    if not match:
        reader.problem(node, "window hours must look like \"09:00-20:00\"",
                       "write the start and end in 24-hour time, quoted")
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
        reader.problem(node, "window hours are not valid times", "use 00:00 to 24:00")
        return None
    start = time(h1, m1)
    end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
    if start >= end:
        reader.problem(node, "the window ends before it starts (windows cannot cross "
                       "midnight)", "make the end later than the start, e.g. \"09:00-20:00\"")
        return None
    return start, end


def _read_window(reader: NodeReader, node: Node) -> SendWindow | None:
    fields = reader.mapping(node, "the window", {"days", "hours"})
    days = _read_days(reader, fields["days"][1]) if "days" in fields else frozenset(range(7))
    hours = _read_hours(reader, fields["hours"][1]) if "hours" in fields else (time(9, 0), time(20, 0))
    if days is None or hours is None:
        return None
    return SendWindow(days=days, start=hours[0], end=hours[1])


def read_condition(reader: NodeReader, node: Node, what: str) -> Condition | None:
    """A `when` condition; None when the node holds no fields at all."""
    fields = reader.mapping(node, what, CONDITION_FIELDS)
    if not fields:
        return None
    values: dict[str, Any] = {}
    for name in ("hesitations_any", "hesitations_all", "hesitations_none"):
        if name in fields:
            reasons = set()
            for reason, item in reader.string_list(fields[name][1], name):
                if reason not in KNOWN_REASONS:
                    reader.problem(item, f"unknown hesitation reason '{reason}'",
                                   f"use one of: {', '.join(sorted(KNOWN_REASONS))}")
                reasons.add(reason)
            values[name] = frozenset(reasons)
    if "discreet" in fields:
        raw = str(getattr(fields["discreet"][1], "value", "")).lower()
        if raw not in ("true", "false"):
            reader.problem(fields["discreet"][1], "`discreet` must be true or false", "write true or false")
        else:
            values["discreet"] = raw == "true"
    if "locale_in" in fields:
        values["locale_in"] = frozenset(v for v, _ in reader.string_list(fields["locale_in"][1],
                                                                         "locale_in"))
    return Condition(**values)


def _read_immediate(reader: NodeReader, fields: dict[str, tuple[Node, Node]], what: str,
                    index: int, delay: timedelta | None) -> bool:
    """`immediate: true` belongs on the first step alone, with no delay: it means "at once"."""
    immediate = read_flag(reader, fields, "immediate", what)
    if immediate and index > 0:
        reader.problem(fields["immediate"][0], f"`immediate` is set on {what}, which is not the "
                       "first step: only the first email can go out at once after confirming",
                       "remove `immediate: true` from this step (later steps keep the send window)")
    elif immediate and delay:
        reader.problem(fields["immediate"][0], f"{what} is `immediate` but has a delay",
                       "set `delay: 0h`, or remove `immediate: true` to keep the delay")
    return immediate


def _read_step(reader: NodeReader, node: Node, index: int) -> Step | None:
    fields = reader.mapping(node, f"step {index + 1}", STEP_FIELDS)
    if not fields:
        return None
    what = f"step {index + 1}"
    key = reader.text(fields, "key", what, required=True, parent=node)
    if key is not None and not KEY_PATTERN.match(key):
        reader.problem(fields["key"][1], f"step key '{key}' is not a valid key",
                       "use lowercase letters, digits and dashes, e.g. why-they-hesitate")
        key = None
    what = f"step '{key}'" if key else what
    template = reader.text(fields, "template", what, required=True, parent=node)
    subject = reader.text(fields, "subject", what, required=True, parent=node)
    delay_text = reader.text(fields, "delay", what, required=True, parent=node)
    delay = None
    if delay_text is not None:
        try:
            delay = parse_delay(delay_text)
        except DelayError:
            reader.problem(fields["delay"][1], f"'{delay_text}' is not a delay",
                           f"write a whole number with a unit (m, h, d, w), e.g. {DELAY_FORMS}")
    when = (read_condition(reader, fields["when"][1], f"the `when` of step '{key or '?'}'")
            if "when" in fields else None)
    asks_to_talk = read_flag(reader, fields, "asks_to_talk", what)
    immediate = _read_immediate(reader, fields, what, index, delay)
    experiment = (read_experiment(reader, fields["experiment"][1], key or str(index + 1))
                  if "experiment" in fields else None)
    if key is None or template is None or subject is None or delay is None:
        return None
    return Step(
        key=key,
        template=template,
        subject=subject,
        delay=delay,
        preheader=reader.text(fields, "preheader", what, required=False, parent=node) or "",
        discreet_subject=reader.text(fields, "discreet_subject", what, required=False, parent=node),
        discreet_preheader=reader.text(fields, "discreet_preheader", what, required=False,
                                       parent=node),
        when=when,
        line=node.start_mark.line + 1,
        asks_to_talk=asks_to_talk,
        immediate=immediate,
        experiment=experiment,
    )


def _compose(path: Path, problems: list[ContentProblem]) -> Node | None:
    """The file's YAML node tree; None, with the problem, when it is not YAML, not UTF-8 or empty."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark is not None else 0
        problems.append(ContentProblem(path, line, f"this is not valid YAML ({error.problem})",
                                       "check the indentation and quoting on this line; quote "
                                       "texts that contain ': ' or start with '{'"))
        return None
    except UnicodeDecodeError:
        problems.append(ContentProblem(path, 0, "the file is not UTF-8 text", "save it as UTF-8"))
        return None
    if root is None:
        problems.append(ContentProblem(path, 1, "the file is empty", "add a key, a name and steps"))
    return root


def _read_key(reader: NodeReader, fields: dict[str, tuple[Node, Node]], root: Node) -> str | None:
    key = reader.text(fields, "key", "the sequence", required=True, parent=root)
    if key is not None and not KEY_PATTERN.match(key):
        reader.problem(fields["key"][1], f"sequence key '{key}' is not a valid key",
                       "use lowercase letters, digits and dashes, e.g. partner-hesitant")
        return None
    if key is not None and key != reader.path.stem:
        reader.problem(fields["key"][1], f"the key '{key}' differs from the file name '{reader.path.name}'",
                       f"rename the file to {key}.yaml or set `key: {reader.path.stem}`")
    return key


def _read_exit_on(reader: NodeReader, node: Node) -> set[str]:
    exit_on: set[str] = set()
    for event, item in reader.string_list(node, "exit_on"):
        if event not in KNOWN_EXIT_EVENTS:
            reader.problem(item, f"unknown exit event '{event}'",
                           f"use one of: {', '.join(sorted(KNOWN_EXIT_EVENTS))}")
        exit_on.add(event)
    return exit_on


def _read_follow_ups(reader: NodeReader, node: Node, exit_on: set[str]) -> list[tuple[str, str]]:
    follow_ups: list[tuple[str, str]] = []
    for event, (event_node, target_node) in reader.mapping(node, "follow_up", set(KNOWN_EXIT_EVENTS)).items():
        target = str(getattr(target_node, "value", ""))
        if event not in exit_on:
            reader.problem(event_node, f"follow_up names '{event}', which is not in exit_on",
                           f"add {event} to exit_on, or remove this follow-up")
        elif not KEY_PATTERN.match(target):
            reader.problem(target_node, f"'{target}' is not a sequence key",
                           "name the key of another sequence, e.g. preparing-together")
        else:
            follow_ups.append((event, target))
    return follow_ups


def _read_steps(reader: NodeReader, fields: dict[str, tuple[Node, Node]], root: Node) -> list[Step]:
    if "steps" not in fields:
        reader.problem(root, "the sequence has no steps", "add `steps:` with at least one step")
        return []
    node = fields["steps"][1]
    if not isinstance(node, SequenceNode) or not node.value:
        reader.problem(node, "`steps` must be a non-empty list", "start each step with `- key: ...`")
        return []
    steps: list[Step] = []
    seen: dict[str, int] = {}
    for index, step_node in enumerate(node.value):
        step = _read_step(reader, step_node, index)
        if step is None:
            continue
        if step.key in seen:
            reader.problem(step_node, f"step key '{step.key}' is used twice (first on line "
                           f"{seen[step.key]})", "give every step its own key")
            continue
        seen[step.key] = step.line
        steps.append(step)
    return steps


def load_sequence_file(path: Path) -> tuple[Sequence | None, list[ContentProblem]]:
    """Read one sequence file; returns the sequence (None if unusable) and every problem found."""
    problems: list[ContentProblem] = []
    reader = NodeReader(path, problems)
    root = _compose(path, problems)
    if root is None:
        return None, problems
    fields = reader.mapping(root, "the sequence", SEQUENCE_FIELDS)
    if not fields:
        return None, problems
    key = _read_key(reader, fields, root)
    name = reader.text(fields, "name", "the sequence", required=True, parent=root)
    window = _read_window(reader, fields["window"][1]) if "window" in fields else SendWindow()
    exit_on = _read_exit_on(reader, fields["exit_on"][1]) if "exit_on" in fields else set()
    follow_ups = _read_follow_ups(reader, fields["follow_up"][1], exit_on) if "follow_up" in fields else []
    steps = _read_steps(reader, fields, root)
    if key is None or name is None or window is None or any(
        p.path == path for p in problems
    ):
        return None, problems
    return Sequence(key=key, name=name, steps=tuple(steps), window=window,
                    exit_on=frozenset(exit_on), follow_ups=tuple(follow_ups), source=path), problems
