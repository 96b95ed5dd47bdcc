"""Keras models of the published architectures with fixed random weights (benchmarks only).

VGG16 and ResNet-20 for CIFAR-10 as in mlGeNN's examples; VGG16, ResNet-18 and ResNet-34 at
224x224x3 with AveragePooling in place of max pooling (SNN conversion needs linear pooling).
Weights are He-normal with BatchNorm statistics drawn near identity, so activations keep
their scale through the depth (what a trained network does) and spike counts are realistic.
"""
from __future__ import annotations

import numpy as np

ARCHITECTURES = ("resnet20_cifar", "vgg16_cifar", "vgg16_224", "resnet18_224", "resnet34_224")

VGG16_BLOCKS = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def build(name: str, seed: int = 0):
    """The Keras model ``name`` (one of :data:`ARCHITECTURES`), deterministic for ``seed``."""
    import keras
    keras.utils.set_random_seed(seed)
    model = {"resnet20_cifar": lambda: _resnet_cifar(3),
             "vgg16_cifar": lambda: _vgg16((32, 32, 3), dense=(512,)),
             "vgg16_224": lambda: _vgg16((224, 224, 3), dense=(4096, 4096), classes=1000),
             "resnet18_224": lambda: _resnet_imagenet((2, 2, 2, 2)),
             "resnet34_224": lambda: _resnet_imagenet((3, 4, 6, 3))}[name]()
    _randomise_batch_norm(model, np.random.default_rng(seed))
    return model


def _vgg16(shape, dense, classes=10):
    import keras
    from keras import layers as L
    x = inp = keras.Input(shape)
    for filters, convs in VGG16_BLOCKS:
        for _ in range(convs):
            x = L.Conv2D(filters, 3, padding="same", activation="relu", use_bias=False,
                         kernel_initializer="he_normal")(x)
        x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    for units in dense:
        x = L.Dense(units, activation="relu", use_bias=False, kernel_initializer="he_normal")(x)
    return keras.Model(inp, L.Dense(classes, use_bias=False)(x))


def _conv_bn(x, filters, kernel, strides=1, relu=True):
    from keras import layers as L
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                 kernel_initializer="he_normal")(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x) if relu else x


def _residual(x, filters, strides):
    from keras import layers as L
    y = _conv_bn(x, filters, 3, strides)
    y = _conv_bn(y, filters, 3, relu=False)
    if strides != 1 or x.shape[-1] != filters:
        x = _conv_bn(x, filters, 1, strides, relu=False)  # 1x1 projection shortcut
    return L.ReLU()(L.Add()([x, y]))


def _resnet_cifar(n):
    import keras
    from keras import layers as L
    x = inp = keras.Input((32, 32, 3))
    x = _conv_bn(x, 16, 3)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            x = _residual(x, filters, 2 if stage and not block else 1)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(10, use_bias=False)(x))


def _resnet_imagenet(blocks):
    import keras
    from keras import layers as L
    x = inp = keras.Input((224, 224, 3))
    x = _conv_bn(x, 64, 7, 2)
    x = L.AveragePooling2D(3, strides=2, padding="valid")(x)
    for stage, (filters, n) in enumerate(zip((64, 128, 256, 512), blocks)):
        for block in range(n):
            x = _residual(x, filters, 2 if stage and not block else 1)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(1000, use_bias=False)(x))


def _randomise_batch_norm(model, rng) -> None:
    from keras import layers as L
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.8, 1.2, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.05, beta.shape).astype(np.float32),
                               rng.normal(0, 0.05, mean.shape).astype(np.float32),
                               rng.uniform(0.8, 1.2, var.shape).astype(np.float32)])


def weight_bytes(model) -> int:
    """float32 bytes of the model's weights (what a network file should be close to)."""
    return int(sum(np.prod(w.shape) for w in model.weights)) * 4
