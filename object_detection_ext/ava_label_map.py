"""AVA label maps: `item { name: "..." id: N }` pbtxt (ActivityNet, AVA v2.2) or `N: name` lines.

`LabelMap.ids` (AVA ids, ascending) orders the contiguous class indices 0..C-1 used inside models;
`categories()` groups the ids as AVA does. Errors name file:line (`AvaFormatError`).
"""

import dataclasses
import os
import re

import numpy as np

from object_detection_ext.ava_csv import AvaFormatError

# AVA's three action groups, by AVA id (ava_action_list_v2.*: PERSON_MOVEMENT, OBJECT_MANIPULATION,
# PERSON_INTERACTION).
CATEGORY_RANGES = {"pose": (1, 14), "person_object": (15, 63), "person_person": (64, 80)}


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """AVA label map. ids: AVA ids sorted ascending (contiguous index i <-> ids[i]);
    names: AVA id -> class name."""

    ids: tuple
    names: dict

    def __post_init__(self):
        ids = tuple(int(i) for i in self.ids)
        if list(ids) != sorted(set(ids)):
            raise ValueError(f"LabelMap ids must be unique and ascending, got {ids}")
        if set(self.names) != set(ids):
            raise ValueError("LabelMap names must have exactly one entry per id")
        object.__setattr__(self, "ids", ids)

    @property
    def num_classes(self):
        return len(self.ids)

    def index_of(self, ids):
        """ids: int array of any shape (AVA ids) -> int64 array, same shape: contiguous index,
        -1 where the id is not in the map."""
        ids = np.asarray(ids, dtype=np.int64)
        table = np.asarray(self.ids, dtype=np.int64)
        if table.size == 0:
            return np.full(ids.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(table, ids), 0, table.size - 1)
        return np.where(table[pos] == ids, pos, -1)

    def categories(self):
        """AVA groups -> the map's ids in them: "pose" 1-14, "person_object" 15-63,
        "person_person" 64-80. Groups with no id in the map are left out."""
        groups = {
            name: [i for i in self.ids if lo <= i <= hi]
            for name, (lo, hi) in CATEGORY_RANGES.items()
        }
        return {name: ids for name, ids in groups.items() if ids}


_BLOCK = re.compile(r"(\w+)\s*\{([^{}]*)\}")
_FIELD = re.compile(r'(\w+)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')
_TEXT_ENTRY = re.compile(r"\s*(-?\d+)\s*:\s*(.*?)\s*\Z")


def read_label_map(path):
    """Reads a label map -> LabelMap.

    Accepts pbtxt (`item { name: "..." id: N }` or `label { name: "..." label_id: N ... }`, as in
    the ActivityNet and AVA v2.2 action lists; other fields are ignored) or text lines `N: name`.
    Raises AvaFormatError naming file:line for an entry without id, a non-integer or duplicate id.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    entries = []  # (line, id, name)
    errors = []
    if "{" in text:
        for block in _BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            fields = {k: v for k, v in _FIELD.findall(block.group(2))}
            raw = fields.get("id", fields.get("label_id"))
            name = fields.get("name", fields.get("display_name", '""'))
            name = re.sub(r"\\(.)", r"\1", name[1:-1]) if name.startswith('"') else name
            if raw is None or not re.fullmatch(r"-?\d+", raw):
                errors.append(
                    f"{path}:{line}: {block.group(1)} block without an integer "
                    f"id/label_id (got {raw!r})"
                )
            else:
                entries.append((line, int(raw), name))
    else:
        for line, row in enumerate(text.splitlines(), 1):
            if not row.strip():
                continue
            match = _TEXT_ENTRY.match(row)
            if match is None:
                errors.append(f"{path}:{line}: expected 'N: name', got {row!r}")
            else:
                entries.append((line, int(match.group(1)), match.group(2)))
    seen = {}
    for line, i, _ in entries:
        if i in seen:
            errors.append(f"{path}:{line}: duplicate id {i} (first on line {seen[i]})")
        seen.setdefault(i, line)
    if not entries and not errors:
        errors.append(f"{path}:1: no label map entries found")
    if errors:
        raise AvaFormatError(errors)
    names = {i: name for _, i, name in entries}
    return LabelMap(ids=tuple(sorted(names)), names=names)


def write_label_map(path, label_map):
    """Writes pbtxt: one `item { name: "..." id: N }` per id, ascending."""
    with open(path, "w", encoding="utf-8") as f:
        for i in label_map.ids:
            name = label_map.names[i].replace("\\", "\\\\").replace('"', '\\"')
            f.write(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n')
