"""VGG-f (CNN-F of Chatfield et al., "Return of the Devil in the Details", BMVC 2014).

The layer list is MatConvNet's (`examples/imagenet/cnn_imagenet_init.m`, `vgg_f`, and the
`imagenet-vgg-f.mat` of the model zoo): conv1 11x11/4 → 54x54, LRN, max pool 3/2 padded
[0 1 0 1] → 27, conv2 5x5 pad 2, LRN, pool 3/2 → 13, conv3-5 3x3 pad 1, pool5 3/2 → 6, fc6 (a
6x6x256x4096 convolution over the whole map), fc7, fc8. No dropout layers: the model zoo file
was imported with dropout removed. With 8 classes it has 56,770,312 trainable parameters.
"""
from __future__ import annotations

import numpy as np

from fer_distill.models import simplenn as nn

INPUT_SIZE = 224
# MatConvNet's LRN param [N kappa alpha beta] for VGG-f: Caffe's CNN_F (local_size 5, k 2,
# alpha 5e-4, beta 0.75) with alpha divided by N on import. A converted file brings its own.
LRN_PARAM = (5, 2.0, 1e-4, 0.75)
# Stand-in for imagenet-vgg-f.mat's 224x224x3 average image: the ImageNet mean colour
# (the real image comes with the converted file; the shape matches it so weights transfer).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)


def layers(num_classes: int = 8, lrn_param=LRN_PARAM) -> list[nn.Layer]:
    """VGG-f's SimpleNN layer list, as MatConvNet's `cnn_imagenet_init.m` builds it."""
    return [
        nn.conv("conv1", (11, 11, 3, 64), stride=4, pad=0), nn.relu("relu1"),
        nn.lrn("norm1", lrn_param), nn.pool("pool1", 3, stride=2, pad=(0, 1, 0, 1)),
        nn.conv("conv2", (5, 5, 64, 256), pad=2), nn.relu("relu2"),
        nn.lrn("norm2", lrn_param), nn.pool("pool2", 3, stride=2, pad=0),
        nn.conv("conv3", (3, 3, 256, 256), pad=1), nn.relu("relu3"),
        nn.conv("conv4", (3, 3, 256, 256), pad=1), nn.relu("relu4"),
        nn.conv("conv5", (3, 3, 256, 256), pad=1), nn.relu("relu5"),
        nn.pool("pool5", 3, stride=2, pad=0),
        nn.conv("fc6", (6, 6, 256, 4096)), nn.relu("relu6"),
        nn.conv("fc7", (1, 1, 4096, 4096)), nn.relu("relu7"),
        nn.conv("fc8", (1, 1, 4096, num_classes)),
    ]


def vgg_f(num_classes: int = 8, *, average_image=None, lrn_param=LRN_PARAM):
    """VGG-f as a Keras Functional model: (N, 224, 224, 3) RGB 0-255 → fc8 logits.

    `average_image` (224x224x3 or 3 values) defaults to the ImageNet mean colour over a
    224x224 image; `load_matconvnet` replaces it with the file's own.
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if average_image is None:
        average_image = np.broadcast_to(np.float32(IMAGENET_MEAN_RGB),
                                        (INPUT_SIZE, INPUT_SIZE, 3))
    return nn.build_chain(layers(int(num_classes), lrn_param),
                          input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
                          average_image=average_image, name="vgg_f")
