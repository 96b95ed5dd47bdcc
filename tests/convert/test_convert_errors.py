"""Unsupported layers and settings fail with an error naming the layer, its class and a fix."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

from distsnn.convert import ConversionError, DataNorm, FewSpike, NormDataError, Simple  # noqa: E402


def image_model(*middle, shape=(8, 8, 2)):
    inp = keras.Input(shape, name="inp")
    x = inp
    for layer in middle:
        x = layer(x)
    if len(x.shape) > 2:
        x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(3, activation="softmax", name="out")(x))


UNSUPPORTED = [
    ("max_pool_of_input", lambda: image_model(L.MaxPooling2D(2, name="bad")), "MaxPooling2D",
     "max-pools signed values (its input is not the output of a ReLU)"),
    ("global_max_pool_before_relu", lambda: image_model(
        L.Conv2D(2, 3), L.GlobalMaxPooling2D(name="bad"), L.ReLU()), "GlobalMaxPooling2D",
     "put the ReLU before the max-pool"),
    ("leaky_relu", lambda: image_model(L.Conv2D(2, 3), L.LeakyReLU(name="bad")), "LeakyReLU",
     "use ReLU"),
    ("conv_transpose_output_padding", lambda: image_model(
        L.Conv2DTranspose(2, 3, strides=2, output_padding=1, name="bad")),
     "Conv2DTranspose", "use output_padding=None"),
    ("dilated_separable", lambda: image_model(L.SeparableConv2D(2, 3, dilation_rate=2,
                                                                name="bad")),
     "SeparableConv2D", "dilated convolutions are not supported; use dilation_rate=1"),
    ("relu6_simple", lambda: image_model(L.Conv2D(2, 3), L.ReLU(max_value=6.0, name="bad")),
     "ReLU", "clipped at 6, which simple conversion does not reproduce; use data-norm, qcfs or "
             "few-spike"),
    ("leaky_relu_layer_params", lambda: image_model(L.Conv2D(2, 3),
                                                    L.ReLU(negative_slope=0.1, name="bad")),
     "ReLU", "negative_slope=0.1"),
    ("sigmoid_hidden", lambda: image_model(L.Conv2D(2, 3, activation="sigmoid", name="bad")),
     "Conv2D", "activation 'sigmoid' is not supported"),
    ("tanh_activation_layer", lambda: image_model(L.Activation("tanh", name="bad")),
     "Activation", "activation 'tanh' is not supported"),
    ("softmax_hidden", lambda: image_model(L.Flatten(), L.Dense(4, activation="softmax",
                                                                name="bad")),
     "Dense", "softmax is only supported on output layers"),
    ("same_pooling", lambda: image_model(L.AveragePooling2D(2, padding="same", name="bad")),
     "AveragePooling2D", "use padding='valid'"),
    ("batchnorm_after_relu", lambda: image_model(L.Conv2D(2, 3, activation="relu"),
                                                 L.BatchNormalization(name="bad")),
     "BatchNormalization", "place BatchNormalization right after the Dense/Conv2D"),
    ("linear_dense_after_linear_conv", lambda: image_model(L.Conv2D(2, 3), L.Flatten(),
                                                           L.Dense(4, name="bad")),
     "Dense", "follows another weighted layer without an activation"),
    ("dense_on_image", lambda: image_model(L.Dense(4, activation="relu", name="bad")), "Dense",
     "add a Flatten layer before it"),
    ("pool_after_linear_conv", lambda: image_model(L.Conv2D(2, 3),
                                                   L.AveragePooling2D(2, name="bad")),
     "AveragePooling2D", "must follow a layer with an activation"),
    ("reshape_to_image", lambda: image_model(L.Reshape((4, 4, 8), name="bad")), "Reshape",
     "only reshaping to a vector"),
    ("dilated_conv", lambda: image_model(L.Conv2D(2, 3, dilation_rate=2, name="bad")), "Conv2D",
     "dilated"),
    ("lambda", lambda: image_model(L.Lambda(lambda t: t * 2.0, name="bad")), "Lambda",
     "Lambda code cannot be inspected"),
    ("layer_norm", lambda: image_model(L.Conv2D(2, 3), L.LayerNormalization(name="bad")),
     "LayerNormalization", "use BatchNormalization"),
    ("zero_pad_not_before_conv", lambda: image_model(L.ZeroPadding2D(1, name="bad"),
                                                     L.ReLU()),
     "ZeroPadding2D", "only supported directly before a Conv2D"),
    ("rescaling_after_conv", lambda: image_model(L.Conv2D(2, 3, activation="relu"),
                                                 L.Rescaling(2.0, name="bad")),
     "Rescaling", "only supported on a model input"),
    ("rescaling_before_relu", lambda: image_model(L.Rescaling(2.0, name="bad"), L.ReLU()),
     "Rescaling", "followed by a Dense or Conv2D, into which it is folded"),
    ("normalization_per_position_before_conv", lambda: image_model(
        L.Normalization(axis=(1, 2, 3), mean=np.zeros((8, 8, 2)),
                        variance=np.linspace(0.5, 2, 128).reshape(8, 8, 2), name="bad"),
        L.Conv2D(2, 3, activation="relu")),
     "Normalization", "varies across image positions"),
]


@pytest.mark.parametrize("case", UNSUPPORTED, ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_layer_names_layer_class_and_fix(case):
    _, build, cls, fix = case
    with pytest.raises(ConversionError) as info:
        Simple(10).convert(build())
    message = str(info.value)
    assert "'bad'" in message and f"({cls}" in message and fix in message, message


def test_recurrent_layer():
    inp = keras.Input((5, 3))
    model = keras.Model(inp, L.Dense(2)(L.LSTM(4, name="bad")(inp)))
    with pytest.raises(ConversionError, match=r"'bad' \(LSTM\).*recurrent"):
        Simple(10).convert(model)


def test_concatenate():
    inp = keras.Input((6,))
    a = L.Dense(3, activation="relu")(inp)
    b = L.Dense(3, activation="relu")(inp)
    model = keras.Model(inp, L.Dense(2)(L.Concatenate(name="bad")([a, b])))
    with pytest.raises(ConversionError, match=r"'bad' \(Concatenate\).*with Add"):
        Simple(10).convert(model)


def test_unsupported_keras_op():
    inp = keras.Input((6,))
    model = keras.Model(inp, L.Dense(2)(keras.ops.sigmoid(L.Dense(3)(inp))))
    with pytest.raises(ConversionError, match=r"\(keras\.ops\.Sigmoid\) is not supported"):
        Simple(10).convert(model)


def test_nested_and_shared_layers():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="relu")], name="inner")
    inp = keras.Input((4,))
    with pytest.raises(ConversionError, match="'inner'.*nested model"):
        Simple(10).convert(keras.Model(inp, L.Dense(2)(inner(inp))))
    shared = L.Dense(4, activation="relu", name="shared")
    inp = keras.Input((4,))
    with pytest.raises(ConversionError, match="'shared'.*more than once"):
        Simple(10).convert(keras.Model(inp, L.Dense(2)(shared(shared(inp)))))


def test_bias_rejection_option():
    model = image_model(L.Conv2D(2, 3, activation="relu", name="bad"))
    with pytest.raises(ConversionError, match=r"'bad' \(Conv2D\): has a bias"):
        Simple(10, biases="reject").convert(model)


def test_data_norm_needs_norm_data():
    with pytest.raises(NormDataError, match="DataNorm needs normalisation data"):
        DataNorm(100)


def test_norm_data_shape_mismatch():
    model = image_model(L.Conv2D(2, 3, activation="relu"))
    with pytest.raises(NormDataError, match=r"shape \(4, 4, 2\).*\(8, 8, 2\)"):
        DataNorm(100, norm_data=np.zeros((5, 4, 4, 2), np.float32)).convert(model)


def test_few_spike_signed_input_needs_even_k():
    with pytest.raises(ValueError, match="even k"):
        FewSpike(k=7, signed_input=True)
    FewSpike(k=8, signed_input=True)
