"""What loading a dataset found: issues (with the file, the record and the fix) and counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(ValueError):
    """A dataset that cannot be used at all; the message names the file and what to fix."""


@dataclass
class Issue:
    """One problem found in a dataset.

    Attributes:
        level: ``error`` (the record was dropped), ``warning`` (repaired or partly used) or ``info``.
        code: short kind of problem, used to group messages (e.g. ``short-polygon``).
        file: the file the problem is in (annotation JSON or image file).
        where: the record, e.g. ``annotation id 12`` or ``image id 3``.
        message: what is wrong and what was done about it.
        fix: what to change in the dataset.
    """

    level: str
    code: str
    file: str
    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"[{self.level}] {self.file}: {self.where}: {self.message}.{fix}"


@dataclass
class LoadReport:
    """Issues found while loading a dataset, and counts of what is usable.

    ``str(report)`` prints a summary with at most ``examples`` messages per kind of issue.
    """

    annotation_file: str = ""
    image_root: str = ""
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    examples: int = 5

    def add(self, level: str, code: str, file: str | Path, where: str, message: str, fix: str = "") -> None:
        self.issues.append(Issue(level, code, str(file), where, message, fix))

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def by_level(self, level: str) -> list[Issue]:
        return [i for i in self.issues if i.level == level]

    @property
    def n_errors(self) -> int:
        return len(self.by_level("error"))

    def __str__(self) -> str:
        lines = [f"annotations: {self.annotation_file}", f"image root:  {self.image_root}"]
        if self.counts:
            lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        levels = Counter(i.level for i in self.issues)
        lines.append(
            f"issues: {levels.get('error', 0)} error(s), {levels.get('warning', 0)} warning(s), "
            f"{levels.get('info', 0)} note(s)"
        )
        groups: dict[tuple[str, str], list[Issue]] = {}
        for issue in self.issues:
            groups.setdefault((issue.level, issue.code), []).append(issue)
        order = {"error": 0, "warning": 1, "info": 2}
        for (level, code), items in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][1])):
            lines.append(f"  {level} {code} x{len(items)}:")
            lines.extend(f"    {item}" for item in items[: self.examples])
            if len(items) > self.examples:
                lines.append(f"    ... and {len(items) - self.examples} more like this")
        return "\n".join(lines)
