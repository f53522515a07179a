"""`run` fixture: every detection function is tested eagerly and inside a tf.function."""
import pytest
import tensorflow as tf


@pytest.fixture(params=["eager", "tf_function"])
def run(request):
  """run(fn, *tensors, **python_kwargs): fn eagerly, or traced by tf.function (tensors as
  arguments, kwargs closed over as constants); returns the result as numpy (nested)."""

  def _run(fn, *args, **kwargs):
    args = [tf.convert_to_tensor(a) for a in args]
    call = (lambda *a: fn(*a, **kwargs))
    if request.param == "tf_function":
      call = tf.function(call)
    return tf.nest.map_structure(lambda t: t.numpy(), call(*args))

  return _run
