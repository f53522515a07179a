"""The base of every head's options: a frozen dataclass defined next to its head.

    HEADS["tx"] == (ActionTransformerHead, ActionTransformerConfig)
    options = ActionTransformerConfig(num_layers=2)
    head = ActionTransformerHead(num_classes=80, **options.head_kwargs())

A config holds what a user chooses (the paper's defaults, written once, in the head's module);
what the detector fixes (the class count, an I3D tail's width) is added by `head_kwargs`.
What the rest of the library needs to know about a head is asked here (`uses_objects`,
`keyframes_needed`, `problems`), never by branching on the head's name.
"""

import dataclasses
from typing import ClassVar, Dict, List, Optional


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Options of one head. Subclasses add fields; every field is a keyword of the head."""

    # Command-line flag -> field, for tools/model_flags.py (the flags of today's flagfiles).
    # `--head_dropout` maps onto `dropout` for every head and wins over a head's own flag.
    flag_names: ClassVar[Dict[str, str]] = {}
    # The head runs the I3D Mixed_5 tail on its RoI tubes itself: the trunk must stop at
    # Mixed_4f and the tail takes the trunk's width and BatchNorm mode.
    runs_i3d_tail: ClassVar[bool] = False
    # Whether the head's paper trains the second stage on background RoI samples too (the
    # detector's `background_rois` when ModelConfig.background_rois is None).
    default_background_rois: ClassVar[bool] = True

    @property
    def uses_objects(self) -> bool:
        """Whether the head will read object tubes (its `ActionHead.uses_objects`), known
        before it is built: the config checks the data pads object boxes."""
        return False

    @property
    def keyframes_needed(self) -> bool:
        """Whether the head needs the keyframe count of the data (`with_keyframes`) before it
        can be built (a table indexed by global keyframe, e.g. AIA's memory)."""
        return False

    def with_keyframes(self, count: int) -> "HeadConfig":
        """This config sized for `count` keyframes (the largest split the model runs on)."""
        del count
        return self

    def problems(self) -> List[str]:
        """Cross-field problems of these options (empty: none); ExperimentConfig reports them."""
        return []

    def prepare(self, head) -> None:
        """Hands `head` (just built from `head_kwargs`) what these options name but the head
        does not read itself, e.g. files (ACAR's feature banks). Default: nothing."""
        del head

    def head_kwargs(self, trunk=None) -> dict:
        """Keyword arguments of the head's constructor (without num_classes). `trunk`: the
        detector's trunk layer (None on stored features), for heads that must match it."""
        del trunk
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> dict:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, values: Optional[dict]) -> "HeadConfig":
        """The config of a `to_json` dict (lists back to tuples); unknown keys raise ValueError."""
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(fields))}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value
