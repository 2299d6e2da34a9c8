"""VGG-face (Parkhi, Vedaldi and Zisserman, "Deep Face Recognition", BMVC 2015).

VGG-16 with MatConvNet's names (`conv1_1` … `conv5_3`, `relu1_1` …, `pool1` … `pool5`), fc6 a
7x7x512x4096 convolution over the whole map, fc7, fc8 (2622 identities in the original). The
model zoo's `vgg-face.mat` has no dropout layers (fc8 is its 36th layer, then the softmax
`prob`), so neither has this builder; the VGG-Face release's own `vgg_face.mat` (a `net`
struct) has two, after relu6 and relu7, and `load_matconvnet` keeps them when converting it.
With 8 classes it has 134,293,320 trainable parameters.
"""
from __future__ import annotations

from fer_distill.models import simplenn as nn

INPUT_SIZE = 224
# `meta.normalization.averageImage` of vgg-face.mat: one RGB colour (1x1x3).
AVERAGE_RGB = (129.1863, 104.7624, 93.5940)
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def layers(num_classes: int = 8) -> list[nn.Layer]:
    """VGG-face's SimpleNN layer list, as in MatConvNet's vgg-face.mat."""
    result, channels = [], 3
    for block, convs, width in _BLOCKS:
        for i in range(1, convs + 1):
            result += [nn.conv(f"conv{block}_{i}", (3, 3, channels, width), pad=1),
                       nn.relu(f"relu{block}_{i}")]
            channels = width
        result.append(nn.pool(f"pool{block}", 2, stride=2, pad=0))
    return result + [
        nn.conv("fc6", (7, 7, 512, 4096)), nn.relu("relu6"),
        nn.conv("fc7", (1, 1, 4096, 4096)), nn.relu("relu7"),
        nn.conv("fc8", (1, 1, 4096, num_classes)),
    ]


def vgg_face(num_classes: int = 8, *, average_image=AVERAGE_RGB):
    """VGG-face as a Keras Functional model: (N, 224, 224, 3) RGB 0-255 → fc8 logits."""
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return nn.build_chain(layers(int(num_classes)), input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
                          average_image=average_image, name="vgg_face")
