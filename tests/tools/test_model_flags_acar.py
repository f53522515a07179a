"""tools/model_flags.py reads ACAR's feature banks (--acfb_bank_dir, --eval_acfb_bank_dir) and
gives them to the head: the head itself takes loaded arrays and reads no files."""

import numpy as np
import pytest

from action_tx.acfb import BankWriter
from action_tx.data.ava import LabelMap
from action_tx.heads.acar import ACARHead

LABELS = LabelMap(ids=(1, 4), names={1: "a", 4: "b"})


def _bank(folder, keyframes, d=4):
    """A bank of `keyframes` keyframes (one video, 1 s apart), one actor each; maps = index."""
    writer = BankWriter(str(folder))
    for k in range(keyframes):
        writer.add(
            k, 0, 900 + k, "v", np.full([1, 3, 3, d], k, np.float32), np.zeros([1, 4]), np.ones([1])
        )
    writer.close()
    return str(folder)


def test_bank_flags_load_the_banks_into_the_head(model_flags, tmp_path):
    train, val = _bank(tmp_path / "train", 5), _bank(tmp_path / "val", 3)
    model_flags.FLAGS(
        [
            "prog",
            "--head=acar",
            "--acar_dim=4",
            "--input=features",
            f"--acfb_bank_dir={train}",
            f"--eval_acfb_bank_dir={val}",
        ]
    )
    head = model_flags.build_model_from_flags(LABELS).head
    assert isinstance(head, ACARHead) and head.get_config()["use_bank"] is True
    tables = head.bank_tables
    np.testing.assert_array_equal(tables["train"].maps.numpy()[:, 0, 0, 0, 0], np.arange(5))
    np.testing.assert_array_equal(tables["eval"].maps.numpy()[:, 0, 0, 0, 0], np.arange(3))
    assert "bank_dir" not in head.get_config()


def test_no_bank_flags_no_bank_and_a_bank_for_another_head_is_refused(model_flags, tmp_path):
    model_flags.FLAGS(["prog", "--head=acar", "--acar_dim=4", "--input=features"])
    head = model_flags.build_model_from_flags(LABELS).head
    assert head.use_bank is False and head.bank_tables == {"train": None, "eval": None}
    model_flags.FLAGS.unparse_flags()
    model_flags.FLAGS(
        ["prog", "--head=linear", "--input=features", f"--acfb_bank_dir={_bank(tmp_path / 'b', 2)}"]
    )
    with pytest.raises(ValueError, match="LinearHead is not an ACARHead"):
        model_flags.build_model_from_flags(LABELS)
