"""A head's weights by name, through public Keras API only (`Layer.weights`, `Variable.path`).

The numpy references of the papers' equations read a head's weights this way instead of reaching
into its private sub-layers: a weight is named by the end of its path, the names the head gives
its sub-layers (e.g. "cls_logits/kernel", "tx_l0_h1/query/bias", "gal1/a").
"""

import numpy as np


def weight(layer, name: str):
    """The one variable of `layer` whose path ends with "/" + name (AssertionError otherwise)."""
    found = [v for v in layer.weights if v.path.endswith("/" + name)]
    assert len(found) == 1, f"{len(found)} weights of {layer.name} end with /{name}: " + ", ".join(
        v.path for v in layer.weights
    )
    return found[0]


def has_sublayer(layer, name: str) -> bool:
    """Whether some weight of `layer` lies under a sub-layer called `name`."""
    return any(f"/{name}/" in v.path for v in layer.weights)


def dense(x, layer, name: str, relu: bool = False) -> np.ndarray:
    """numpy x @ kernel + bias of the Dense sub-layer `name` of `layer` (ReLU when asked)."""
    y = x @ weight(layer, name + "/kernel").numpy() + weight(layer, name + "/bias").numpy()
    return np.maximum(y, 0) if relu else y
