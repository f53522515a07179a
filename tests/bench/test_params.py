"""The params suite's counting on tiny configurations (the paper-size run is the benchmark)."""

import keras
import pytest

from action_tx.bench import params
from action_tx.heads.linear import LinearHead

TX = dict(
    num_heads=2,
    num_layers=2,
    hidden_size=8,
    dropout=0.0,
    location_embedding_size=4,
    highres_reduced_channels=3,
    ffn_hidden=16,
)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)


def test_dummy_inputs_shapes():
    inputs = params.dummy_inputs(channels=6, trunk_map=(2, 3, 4), roi_size=5)
    assert inputs.features.shape == (1, 2, 3, 4, 6)
    assert inputs.roi_features.shape == (1, 1, 2, 5, 5, 6)
    assert inputs.rois.numpy().tolist() == [[[0.0, 0.0, 1.0, 1.0]]]
    assert inputs.roi_mask.numpy().tolist() == [[True]]


def test_count_params_of_a_linear_head():
    # 6 channels -> 3 classes: 6 x 3 kernel + 3 biases, and the actor (background) logit's
    # 6 x 1 kernel + 1 bias; no non-trainable weights.
    head = LinearHead(3)
    assert params.count_params(head, params.dummy_inputs(6, (2, 3, 3), 2)) == (
        28,
        28,
    )  # 6 classes + the actor logit (issue 27)


def test_head_counts_relations_on_a_tiny_configuration():
    c, e, r, s, d, heads, classes = 6, 4, 3, 2, 8, 2, 5
    counts = params.head_counts(
        classes, channels=c, trunk_map=(2, 3, 3), roi_size=s, width_multiplier=0.05, tx_options=TX
    )
    assert set(counts) == {"i3d", "tx LowRes", "tx HighRes", "tx_i3d"}
    # HighRes adds the 1x1 conv (C' -> r, C' = C + 2E with the location embedding) and its
    # first layer's query projections read S*S*r values instead of C'.
    c_emb = c + 2 * e
    highres_extra = (c_emb * r + r) + heads * d * (s * s * r - c_emb)
    assert counts["tx HighRes"][0] - counts["tx LowRes"][0] == highres_extra
    # tx_i3d = HighRes Tx without its box layer + I3D head without its classifier and actor
    # logit (the Tx sub-head gives tx_i3d's actor logit).
    c5 = params.I3DHead(classes, width_multiplier=0.05).tail.output_channels  # Mixed_5c
    assert c5 == 2 * 19 + 2 * 8  # 384 * 0.05 -> 19 twice, 128 * 0.05 -> floor of 8 twice
    tx_box = heads * d * 4 + 4
    i3d_classifier = c5 * classes + classes + c5 + 1
    for column in (0, 1):
        assert counts["tx_i3d"][column] == (
            counts["tx HighRes"][column] - tx_box + counts["i3d"][column] - i3d_classifier
        )
    # Tx heads have no non-trainable weights; the I3D tail's BatchNorm moving statistics are.
    assert counts["tx LowRes"][0] == counts["tx LowRes"][1]
    assert counts["i3d"][0] > counts["i3d"][1]
