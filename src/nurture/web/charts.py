"""Server-rendered SVG charts for the admin pages: no script, a <title> and <desc>, and text labels."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from markupsafe import Markup

WIDTH: Final = 640
ROW_HEIGHT: Final = 46
LABEL_BASELINE: Final = 16
BAR_TOP: Final = 22
BAR_HEIGHT: Final = 18
TOP_MARGIN: Final = 6
# A stage with a few emails still shows as a sliver rather than vanishing.
MIN_BAR: Final = 2


@dataclass(frozen=True)
class FunnelStage:
    label: str
    value: int
    note: str = ""
    """Shown after the value, e.g. "2 unsubscribed after"."""


def percent_of(value: int, first: int) -> str:
    if first <= 0:
        return ""
    return f"{round(100 * value / first)}%"


def _stage_text(stage: FunnelStage, first: int, unit: str) -> str:
    parts = [f"{stage.label}: {stage.value} {unit}"]
    share = percent_of(stage.value, first)
    if share:
        parts[0] += f" ({share})"
    if stage.note:
        parts.append(stage.note)
    return ", ".join(parts)


def funnel_svg(title: str, stages: Sequence[FunnelStage], *, chart_id: str,
               unit: str = "sent") -> Markup:
    """Centred bars, one per stage, scaled to the largest; each labelled with its value and its share
    of the first stage. `chart_id` makes the ids of <title> and <desc> unique on the page."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]", "-", chart_id) or "chart"
    height = TOP_MARGIN * 2 + ROW_HEIGHT * max(1, len(stages))
    largest = max((stage.value for stage in stages), default=0)
    first = stages[0].value if stages else 0
    if stages and largest:
        description = "; ".join(_stage_text(stage, first, unit) for stage in stages) + "."
    else:
        description = "Nothing in this period."
    title_id, desc_id = f"{safe_id}-title", f"{safe_id}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="funnel" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-labelledby="{title_id} {desc_id}">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<desc id="{desc_id}">{escape(description)}</desc>',
    ]
    for index, stage in enumerate(stages):
        top = TOP_MARGIN + index * ROW_HEIGHT
        bar = 0 if not largest else max(MIN_BAR if stage.value else 0,
                                         round(WIDTH * stage.value / largest))
        left = (WIDTH - bar) // 2
        parts.append(
            f'<g class="funnel-stage">'
            f'<text class="funnel-label" x="0" y="{top + LABEL_BASELINE}">'
            f'{escape(_stage_text(stage, first, unit))}</text>'
            f'<rect class="funnel-track" x="0" y="{top + BAR_TOP}" width="{WIDTH}" '
            f'height="{BAR_HEIGHT}" fill="#eceef1"/>'
            f'<rect class="funnel-bar" x="{left}" y="{top + BAR_TOP}" width="{bar}" '
            f'height="{BAR_HEIGHT}" fill="#1d4f91"/>'
            f'</g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
