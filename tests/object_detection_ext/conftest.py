"""`run` fixture: every detection function is tested eagerly and inside a tf.function."""

import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(params=["eager", "tf_function"])
def run(request):
    """run(fn, *arrays, **kwargs): calls fn eagerly, or traced by tf.function. Positional
    arguments and numpy-array keyword arguments become tensor arguments of the traced function;
    other keyword arguments are closed over as Python constants. Returns numpy (nested)."""

    def _run(fn, *args, **kwargs):
        tensor_kw = {
            k: tf.convert_to_tensor(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)
        }
        const_kw = {k: v for k, v in kwargs.items() if k not in tensor_kw}
        args = [tf.convert_to_tensor(a) for a in args]
        call = lambda a, kw: fn(*a, **kw, **const_kw)
        if request.param == "tf_function":
            call = tf.function(call)
        return tf.nest.map_structure(lambda t: t.numpy(), call(args, tensor_kw))

    return _run
