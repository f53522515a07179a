"""The FLOP counter of the perf suite (action_tx.bench.flops) against analytic counts."""

import keras
import numpy as np
import tensorflow as tf

from action_tx.bench import flops


def _conv3d_and_input():
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv3D(16, (3, 3, 3), strides=(1, 2, 2), padding="same")
    x = tf.random.stateless_normal([2, 8, 32, 32, 8], seed=[0, 1])
    conv(x)
    return conv, x


def test_conv3d_forward_equals_the_analytic_count():
    conv, x = _conv3d_and_input()
    counts = flops.count_flops(tf.function(lambda x: conv(x)).get_concrete_function(x))
    outputs = 2 * 8 * 16 * 16 * 16  # N x D' x H' x W' x Cout (stride 2 in space, SAME)
    assert counts.by_op_type["Conv3D"] == 2 * 27 * 8 * outputs  # 2 K Cin x outputs
    assert counts.by_op_type["BiasAdd"] == outputs
    assert counts.total == 2 * 27 * 8 * outputs + outputs
    assert counts.by_source == {"tf_registry": counts.total}


def test_conv3d_gradients_are_filled_in_where_tfprof_counts_none():
    conv, x = _conv3d_and_input()

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(conv(x))
        # y returned: otherwise nothing reads the forward conv (the gradients of a sum do
        # not need it) and it is pruned, as the runtime would.
        return y, tape.gradient(y, [x, *conv.trainable_variables])

    graph_fn = forward_backward.get_concrete_function(x)
    counts = flops.count_flops(graph_fn)
    forward = 2 * 27 * 8 * (2 * 8 * 16 * 16 * 16)
    assert counts.by_op_type["Conv3DBackpropInputV2"] == forward
    assert counts.by_op_type["Conv3DBackpropFilterV2"] == forward
    assert counts.by_source["analytic"] == 2 * forward
    # TF's own profiler counts the registered part only (no Conv3D gradient statistics).
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph_fn.graph, options=options)
    assert profile.total_float_ops == counts.by_source["tf_registry"]
    assert counts.total == profile.total_float_ops + 2 * forward


def test_dense_equals_the_analytic_count():
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(32)
    x = tf.ones([5, 7])
    dense(x)
    counts = flops.count_flops(tf.function(lambda x: dense(x)).get_concrete_function(x))
    assert counts.by_op_type["MatMul"] == 2 * 5 * 7 * 32
    assert counts.total == 2 * 5 * 7 * 32 + 5 * 32  # + the bias add
    assert counts.uncounted == {} and counts.unknown_shape == {}


def test_einsum_pooling_and_nested_functions():
    a, b = tf.ones([3, 4, 5]), tf.ones([5, 6])
    inner = tf.function(lambda a, b: tf.einsum("bij,jk->bik", a, b))

    @tf.function
    def outer(a, b, v):
        pooled = tf.nn.max_pool3d(
            v, ksize=[1, 2, 2, 2, 1], strides=[1, 2, 2, 2, 1], padding="VALID"
        )
        return inner(a, b), tf.einsum("...ij->...ji", a), pooled

    v = tf.ones([1, 4, 4, 4, 2])
    counts = flops.count_flops(outer.get_concrete_function(a, b, v))
    assert counts.by_op_type["Einsum"] == 2 * 3 * 4 * 5 * 6 + 3 * 4 * 5  # + the transpose
    assert counts.by_op_type["MaxPool3D"] == 8 * (1 * 2 * 2 * 2 * 2)  # window x outputs
    assert counts.total == counts.by_op_type["Einsum"] + counts.by_op_type["MaxPool3D"]


def test_while_body_counts_times_its_trip_count():
    x = tf.ones([4, 8, 8])
    fn = tf.function(lambda x: tf.map_fn(lambda m: tf.matmul(m, m), x))
    counts = flops.count_flops(fn.get_concrete_function(x))
    assert counts.by_op_type["MatMul"] == 4 * 2 * 8 * 8 * 8
    assert not counts.notes
    assert np.isclose(flops.op_type_pattern("^Mat", counts), 4 * 2 * 8**3)


def test_einsum_formula_does_not_depend_on_model_gardens_registration():
    import official.core.train_utils  # noqa: F401  (registers its own Einsum statistics)

    x = tf.ones([2, 3])
    fn = tf.function(lambda x: tf.einsum("ij->ji", x) + 0.0)
    counts = flops.count_flops(fn.get_concrete_function(x))
    assert counts.by_op_type["Einsum"] == 6 and counts.by_source["analytic"] == 6


def test_ops_nothing_reads_are_not_counted():
    """tape.gradient w.r.t. the weights builds the input gradient of the first conv too; the
    runtime prunes it, and so does the count."""
    conv, x = _conv3d_and_input()

    @tf.function
    def weight_gradients(x):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(conv(x))
        return y, tape.gradient(y, conv.trainable_variables)

    graph = weight_gradients.get_concrete_function(x).graph
    assert "Conv3DBackpropInputV2" in {op.type for op in graph.get_operations()}
    counts = flops.count_flops(graph)
    forward = 2 * 27 * 8 * (2 * 8 * 16 * 16 * 16)
    assert "Conv3DBackpropInputV2" not in counts.by_op_type
    assert counts.by_op_type["Conv3DBackpropFilterV2"] == counts.by_op_type["Conv3D"] == forward
