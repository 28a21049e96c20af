"""Op placement as text: device names as people read them, and markdown tables.

Plain text only (no Keras or TensorFlow import), so that ``trainer.devices`` can use it before
TensorFlow is imported. ``PlacementSummary`` writes ``placement_markdown`` to TensorBoard;
``trainer.devices`` renders its device report with the same tables.
"""

from __future__ import annotations

Rows = list[tuple[str, str]]

PLACEMENT_TITLE = "Op placement (start of run to end of epoch 1)"


def short_device(name: str) -> str:
    """'/job:localhost/replica:0/task:0/device:CPU:0' or '/physical_device:CPU:0' -> 'CPU:0'."""
    return name.rsplit("device:", 1)[-1] if "device:" in name else name


def placement_section(summary: dict[str, int]) -> tuple[str, Rows]:
    """(section title, rows) for ops per device, as ``placement_summary`` counts them."""
    return (PLACEMENT_TITLE,
            [(f"ops on {short_device(dev)}", f"{count:,}") for dev, count in summary.items()]
            or [("ops", "none logged")])


def markdown_tables(sections: list[tuple[str, Rows]]) -> str:
    """A '### section' heading and an Item / Value table per section."""
    parts = []
    for section, rows in sections:
        parts.append(f"### {section}\n\n| Item | Value |\n|---|---|")
        parts[-1] += "".join(f"\n| {item} | {value.replace('|', '/')} |" for item, value in rows)
    return "\n\n".join(parts) + "\n"


def placement_markdown(summary: dict[str, int]) -> str:
    """``placement_summary``'s result as a markdown table."""
    return markdown_tables([placement_section(summary)])
