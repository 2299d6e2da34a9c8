"""ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016) in the
layout and names of MatConvNet's `imagenet-resnet-50-dag.mat`.

    model = resnet50(num_classes=8, input_size=224)     # input_size >= 32

Built from a DagNN layer list (`layers`, `dagnn.build_dag`). The embedding E is `pool5` (the
pooled 2048-d feature), the logits A `fc1000` whatever the number of classes; 23,577,608
parameters with 8 classes, plus the average image. `pool1_pad=(1, 1, 1, 1)` is Keras' own
arrangement, for its weights (`keras_resnet50`). Layer layout: docs/DESIGN.md, "Models".
"""
from __future__ import annotations

from fer_distill.models import dagnn

INPUT_SIZE = 224
MIN_INPUT_SIZE = 32
# The ImageNet mean colour (RGB) of Caffe's ResNet preprocessing; a converted file brings its
# own average image.
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
EMBEDDING_LAYER = "pool5"
LOGITS_LAYER = "fc1000"
MATCONVNET_POOL1_PAD = (0, 1, 0, 1)
KERAS_POOL1_PAD = (1, 1, 1, 1)
# (stage, units, bottleneck width) for ResNet-50; the output of a unit is 4x its width.
STAGES = ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512))
BN_EPSILON = 1e-5  # Caffe's default, which the import keeps


def map_sizes(input_size: int, pool1_pad=MATCONVNET_POOL1_PAD) -> dict[str, int]:
    """Side of the square map after conv1, pool1 and each stage, MatConvNet's arithmetic."""
    top, bottom = pool1_pad[:2]
    sizes = {"conv1": (input_size + 6 - 7) // 2 + 1}
    sizes["pool1"] = (sizes["conv1"] + top + bottom - 3) // 2 + 1
    side = sizes["pool1"]
    for stage, _, _ in STAGES:
        if stage > 2:
            side = (side - 1) // 2 + 1  # 1x1 conv, stride 2, no padding
        sizes[f"res{stage}"] = side
    return sizes


def layers(num_classes: int = 8, input_size: int = INPUT_SIZE, *, width: int = 64,
           pool1_pad=MATCONVNET_POOL1_PAD, epsilon: float = BN_EPSILON) -> list[dagnn.Layer]:
    """ResNet-50's DagNN layer list (`width` 64 is ResNet-50; smaller widths keep the
    topology, for tests)."""
    result = [
        dagnn.conv("conv1", "data", (7, 7, 3, width), stride=2, pad=3, has_bias=True),
        dagnn.bnorm("bn_conv1", "conv1", width, epsilon=epsilon),
        dagnn.relu("conv1_relu", "bn_conv1"),
        dagnn.pool("pool1", "conv1_relu", 3, stride=2, pad=pool1_pad),
    ]
    x, channels = "pool1", width
    for stage, units, base in STAGES:
        inner = base * width // 64
        outer = 4 * inner
        for u in range(units):
            unit = f"{stage}{'abcdefghijklmnopqrstuvwxyz'[u]}"
            stride = 2 if u == 0 and stage > 2 else 1
            if u == 0:
                result += [dagnn.conv(f"res{unit}_branch1", x, (1, 1, channels, outer),
                                      stride=stride),
                           dagnn.bnorm(f"bn{unit}_branch1", f"res{unit}_branch1", outer,
                                       epsilon=epsilon)]
                shortcut = f"bn{unit}_branch1"
            else:
                shortcut = x
            result += [
                dagnn.conv(f"res{unit}_branch2a", x, (1, 1, channels, inner), stride=stride),
                dagnn.bnorm(f"bn{unit}_branch2a", f"res{unit}_branch2a", inner,
                            epsilon=epsilon),
                dagnn.relu(f"res{unit}_branch2a_relu", f"bn{unit}_branch2a"),
                dagnn.conv(f"res{unit}_branch2b", f"res{unit}_branch2a_relu",
                           (3, 3, inner, inner), pad=1),
                dagnn.bnorm(f"bn{unit}_branch2b", f"res{unit}_branch2b", inner,
                            epsilon=epsilon),
                dagnn.relu(f"res{unit}_branch2b_relu", f"bn{unit}_branch2b"),
                dagnn.conv(f"res{unit}_branch2c", f"res{unit}_branch2b_relu",
                           (1, 1, inner, outer)),
                dagnn.bnorm(f"bn{unit}_branch2c", f"res{unit}_branch2c", outer,
                            epsilon=epsilon),
                dagnn.add(f"res{unit}", [shortcut, f"bn{unit}_branch2c"]),
                dagnn.relu(f"res{unit}_relu", f"res{unit}"),
            ]
            x, channels = f"res{unit}_relu", outer
    side = map_sizes(input_size, pool1_pad)["res5"]
    return result + [
        dagnn.pool("pool5", x, side, stride=1, method="avg"),
        dagnn.conv("fc1000", "pool5", (1, 1, channels, num_classes), has_bias=True),
    ]


def resnet50(num_classes: int = 8, input_size: int = INPUT_SIZE, *, width: int = 64,
             average_image=IMAGENET_MEAN_RGB, pool1_pad=MATCONVNET_POOL1_PAD):
    """ResNet-50 as a Keras Functional model: (N, S, S, 3) RGB 0-255 → fc1000 logits;
    `pool5` (N, 4*8*width) is the embedding."""
    for what, value, least in (("num_classes", num_classes, 1),
                               ("input_size", input_size, MIN_INPUT_SIZE), ("width", width, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"{what} must be an integer >= {least}, got {value!r}")
    if tuple(pool1_pad) not in (MATCONVNET_POOL1_PAD, KERAS_POOL1_PAD):
        raise ValueError(f"pool1_pad must be {MATCONVNET_POOL1_PAD} (MatConvNet) or "
                         f"{KERAS_POOL1_PAD} (Keras), got {pool1_pad!r}")
    return dagnn.build_dag(layers(int(num_classes), int(input_size), width=int(width),
                                  pool1_pad=tuple(pool1_pad)),
                           input_shape=(input_size, input_size, 3),
                           average_image=average_image, name="resnet50")


def recognise(graph: list[dagnn.Layer], input_shape) -> tuple[str, str] | None:
    """("resnet50", description) when a DagNN layer list is ResNet-50's topology and names
    (any width, either pool1 padding), else None."""
    height, width_px = int(input_shape[0]), int(input_shape[1])
    conv1 = next((layer for layer in graph if layer["name"] == "conv1"), None)
    if height != width_px or height < MIN_INPUT_SIZE or conv1 is None or \
            conv1["type"] != "dagnn.Conv":
        return None
    found = dagnn.signature(graph)
    base = int(conv1["block"]["size"][3])
    for pad in (MATCONVNET_POOL1_PAD, KERAS_POOL1_PAD):
        if found == dagnn.signature(layers(1, height, width=base, pool1_pad=pad)):
            size = "" if base == 64 else f", reduced width {base}"
            return "resnet50", f"ResNet-50 (He et al. 2016, MatConvNet's layout{size})"
    return None
