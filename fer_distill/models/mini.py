"""`mini`: a VGG-f-shaped network small enough for tests and the demo on a CPU.

Same layer kinds and names as VGG-f (normalization, conv1, relu1, norm1, pool1, conv2, relu2,
pool2, fc6, relu6, fc7, relu7, fc8), the same MatConvNet layers (LRN, asymmetrically padded
max pooling, and an average pooling whose padding is not counted), so every stage of the
package, and the MatConvNet converter and writer, run on it unchanged. Any input size >= 32
works; the spatial map before fc6 is ceil(S/4) x ceil(S/4).
"""
from __future__ import annotations

from fer_distill.models import simplenn as nn

LRN_PARAM = (5, 2.0, 1e-4, 0.75)
# Mid-grey stand-in for a data set's mean colour; 1x1x3 like VGG-face's.
AVERAGE_RGB = (128.0, 128.0, 128.0)
MIN_INPUT_SIZE = 32


def layers(num_classes: int = 8, width: int = 16, embedding_size: int = 64,
           input_size: int = 32) -> list[nn.Layer]:
    """mini's SimpleNN layer list for square inputs of `input_size` pixels."""
    after_pool1 = (input_size + 1 - 3) // 2 + 1
    after_pool2 = (after_pool1 + 2 - 3) // 2 + 1
    return [
        nn.conv("conv1", (3, 3, 3, width), pad=1), nn.relu("relu1"),
        nn.lrn("norm1", LRN_PARAM), nn.pool("pool1", 3, stride=2, pad=(0, 1, 0, 1)),
        nn.conv("conv2", (3, 3, width, 2 * width), pad=1), nn.relu("relu2"),
        nn.pool("pool2", 3, stride=2, pad=1, method="avg"),
        nn.conv("fc6", (after_pool2, after_pool2, 2 * width, embedding_size)), nn.relu("relu6"),
        nn.conv("fc7", (1, 1, embedding_size, embedding_size)), nn.relu("relu7"),
        nn.conv("fc8", (1, 1, embedding_size, num_classes)),
    ]


def mini(num_classes: int = 8, input_size: int = 32, *, width: int = 16,
         embedding_size: int = 64, average_image=AVERAGE_RGB):
    """A small Functional model: (N, S, S, 3) RGB 0-255 → fc8 logits; relu7 is the embedding."""
    for what, value, least in (("num_classes", num_classes, 1), ("width", width, 1),
                               ("embedding_size", embedding_size, 1),
                               ("input_size", input_size, MIN_INPUT_SIZE)):
        if int(value) != value or value < least:
            raise ValueError(f"{what} must be an integer >= {least}, got {value!r}")
    return nn.build_chain(
        layers(int(num_classes), int(width), int(embedding_size), int(input_size)),
        input_shape=(input_size, input_size, 3), average_image=average_image, name="mini")
