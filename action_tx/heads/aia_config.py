"""`AIAHeadConfig`: the options of the AIA head (`action_tx.heads.aia.AIAHead`,
aia_interaction_aggregation.txt) with the paper's defaults, and their flag names."""

import dataclasses
from typing import Sequence

from action_tx.heads.aia_blocks import parse_blocks
from action_tx.heads.head_config import HeadConfig


@dataclasses.dataclass(frozen=True)
class AIAHeadConfig(HeadConfig):
    """Options of `AIAHead` (aia_interaction_aggregation.txt)."""

    flag_names = {
        "aia_blocks": "blocks",
        "aia_structure": "structure",
        "aia_memory_window": "memory_window",
        "aia_amu": "use_amu",
        "aia_memory_dtype": "memory_dtype",
        "aia_memory_size": "memory_size",
        "aia_temporal_position": "temporal_position",
    }
    blocks: Sequence[str] = ("P", "O", "M", "P", "O", "M")  # Table 1: the best order
    structure: str = "dense"  # §3.3, Table 1d: Dense Serial IA
    memory_window: int = 30  # §4.1: L = 30
    use_amu: bool = True  # §3.4, Algorithm 1
    memory_dtype: str = "float32"
    memory_size: int = 0  # rows of the memory tables: the keyframes of the data
    temporal_position: bool = True  # the authors' release; the paper is silent
    dropout: float = 0.2  # the authors' release; the paper is silent
    hidden_size: int = 512  # D, every block's width (the release; no flag)

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(parse_blocks(self.blocks)))

    @property
    def uses_objects(self) -> bool:
        return "O" in self.blocks

    @property
    def _uses_table(self) -> bool:
        return "M" in self.blocks and self.memory_window > 0

    @property
    def keyframes_needed(self) -> bool:
        return self._uses_table and not self.memory_size

    def with_keyframes(self, count: int) -> "AIAHeadConfig":
        return dataclasses.replace(self, memory_size=int(count)) if self.keyframes_needed else self

    def problems(self):
        if self.keyframes_needed:
            return [
                "aia: M-blocks with a memory window need the memory size (the keyframes "
                "of the largest split the model runs on; tools: --aia_memory_size), and no "
                "manifest of the data gives it"
            ]
        return []
