"""dlib's 128-d face-descriptor ResNet as a differentiable PyTorch module, and its aligned face chip.

MagiCapture's identity loss needs gradients through a face-recognition network. The only
recogniser whose weights ship with the product under a permissive licence is dlib's ResNet
(`dlib_face_recognition_resnet_model_v1.dat`, CC0, installed by face-recognition-models), and
dlib runs it without gradients. So the file is read here, at run time, straight from dlib's own
serialization format, and the network is rebuilt from PyTorch operations; nothing is downloaded
and no converted copy is stored. Parsing the 22 MB file takes well under a second (its tensors
are raw little-endian floats), so the weights are not cached on disk.

The network (dlib/examples/dnn_face_recognition_ex.cpp, `anet_type`):

    input 150x150 RGB, (pixel - channel mean) / 256
    con 32 7x7 /2, affine, relu, max_pool 3x3 /2
    level4: 3x res(32)      level3: res_down(64), 3x res(64)
    level2: res_down(128), 2x res(128)    level1: res_down(256), 2x res(256)
    level0: res_down(256)   then avg_pool over everything, fc 128 without bias

    res(N)      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    res_down(N) = relu(avg_pool2x2/2(x) + affine(con3x3(relu(affine(con3x3/2(x))))))

dlib pads a stride-2 convolution or pooling by 0 and a stride-1 one by half its window, and its
`add_prev` adds tensors of different shapes over a zero-padded, top-left aligned canvas (the
block's channels outnumber its input's; at the 8 -> 3/4 px step the pooled shortcut is larger).
The serialized stream nests like the C++ type: every wrapper's version from the loss layer
inwards, the input layer, then each layer's details from the input outwards.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

# dlib's 5-point "mean face" in a unit chip (dlib/image_transforms/interpolation.h,
# get_face_chip_details), in the order of shape_predictor_5_face_landmarks.
CHIP_TEMPLATE_5 = np.array(
    [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316475),
    ]
)
# dlib's compute_face_descriptor: a 150 px chip with 25% padding around the template.
CHIP_SIZE = 150
CHIP_PADDING = 0.25
DESCRIPTOR_SIZE = 128

# The residual stages from the input outwards: (filters, down-sampling blocks, plain blocks).
_STAGES = ((32, 0, 3), (64, 1, 3), (128, 1, 2), (256, 1, 2), (256, 1, 0))


class DescriptorFormatError(ValueError):
    """The file is not the network this port reproduces (truncated, another network, another format)."""


class _Reader:
    """dlib's serialize.h: integers as a control byte (sign 0x80, length 0x0F) and that many LE bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _take(self, count: int) -> bytes:
        end = self.offset + count
        if end > len(self.data):
            raise DescriptorFormatError("the file ends early")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8:
            raise DescriptorFormatError(f"bad integer control byte {control:#x} at {self.offset - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        """A float_details: mantissa * 2**exponent (dlib's portable binary float)."""
        mantissa = self.integer()
        exponent = self.integer()
        return float(np.ldexp(float(mantissa), exponent))

    def boolean(self) -> bool:
        flag = self._take(1)
        if flag not in (b"0", b"1"):
            raise DescriptorFormatError(f"bad bool at {self.offset - 1}")
        return flag == b"1"

    def string(self) -> str:
        raw = self._take(max(0, self.integer()))
        if not raw.isascii():
            raise DescriptorFormatError(f"expected a layer name at {self.offset - len(raw)}")
        return raw.decode("ascii")

    def expect(self, *versions: str) -> str:
        version = self.string()
        if version not in versions:
            raise DescriptorFormatError(f"expected {' or '.join(versions)}, found {version!r}")
        return version

    def version(self, *allowed: int) -> int:
        value = self.integer()
        if value not in allowed:
            raise DescriptorFormatError(f"unexpected version {value} at {self.offset}")
        return value

    def shape(self) -> tuple[int, int, int, int]:
        """An alias_tensor: only a shape (its values live in the layer's params tensor)."""
        self.version(1)
        return (self.integer(), self.integer(), self.integer(), self.integer())

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: its shape, then raw little-endian float32 values."""
        self.version(2)
        shape = (self.integer(), self.integer(), self.integer(), self.integer())
        if min(shape) < 0:
            raise DescriptorFormatError(f"negative tensor shape {shape}")
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)


@dataclass(frozen=True)
class _Node:
    """One level of dlib's nested type: a layer, or a tag / skip wrapper that only routes tensors."""

    kind: str  # con | affine | relu | max_pool | avg_pool | add_prev | fc | tag | skip
    arg: tuple[int, ...] = ()  # con: (filters, window, stride); pools: (window, stride); tags: (id,)


def _architecture() -> list[_Node]:
    """anet_type from the input outwards (the order the forward pass runs)."""
    nodes = [_Node("con", (32, 7, 2)), _Node("affine"), _Node("relu"), _Node("max_pool", (3, 2))]
    for filters, downs, plains in _STAGES:
        for stride in [2] * downs + [1] * plains:
            nodes.append(_Node("tag", (1,)))
            nodes += [_Node("con", (filters, 3, stride)), _Node("affine"), _Node("relu")]
            nodes += [_Node("con", (filters, 3, 1)), _Node("affine")]
            if stride == 2:
                nodes += [_Node("tag", (2,)), _Node("skip", (1,)), _Node("avg_pool", (2, 2))]
                nodes.append(_Node("add_prev", (2,)))
            else:
                nodes.append(_Node("add_prev", (1,)))
            nodes.append(_Node("relu"))
    nodes += [_Node("avg_pool", (0, 1)), _Node("fc", (DESCRIPTOR_SIZE,))]
    return nodes


@dataclass
class _Weights:
    channel_means: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tensors: dict[int, list[np.ndarray]] = field(default_factory=dict)  # node index -> its arrays


def _split(params: np.ndarray, index: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """A layer's params tensor cut into its alias tensors (dlib keeps them back to back)."""
    sizes = [math.prod(shape) for shape in shapes]
    if sum(sizes) != params.size:
        raise DescriptorFormatError(f"layer {index}: {params.size} parameters where {sum(sizes)} belong")
    parts = np.split(params.reshape(-1), np.cumsum(sizes)[:-1])
    return [part.reshape(shape) for part, shape in zip(parts, shapes, strict=True)]


def _read_details(reader: _Reader, node: _Node, index: int, weights: _Weights) -> None:
    """One layer's own serialization (dlib/dnn/layers.h), checked against the architecture.

    Only the layer versions of the file face-recognition-models ships are accepted: later ones
    add fields (con_6's fused relu, say) that would change what the network computes.
    """
    if node.kind == "con":
        reader.expect("con_4")
        params = reader.tensor()
        filters, rows, cols = reader.integer(), reader.integer(), reader.integer()
        stride_y, stride_x = reader.integer(), reader.integer()
        padding = (reader.integer(), reader.integer())
        kernel_shape, bias_shape = reader.shape(), reader.shape()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.real()
        expected_filters, window, stride = node.arg
        if (filters, rows, cols, stride_y, stride_x) != (expected_filters, window, window, stride, stride):
            raise DescriptorFormatError(f"layer {index}: unexpected convolution {filters}x{rows}/{stride_y}")
        if padding != ((0, 0) if stride != 1 else (window // 2, window // 2)):
            raise DescriptorFormatError(f"layer {index}: unexpected padding {padding}")
        weights.tensors[index] = _split(params, index, kernel_shape, (filters,))
        if math.prod(bias_shape) != filters:
            raise DescriptorFormatError(
                f"layer {index}: {math.prod(bias_shape)} biases for {filters} filters"
            )
    elif node.kind == "affine":
        reader.expect("affine_")
        params = reader.tensor()
        gamma_shape, beta_shape = reader.shape(), reader.shape()
        reader.integer()  # mode: conv (per channel)
        weights.tensors[index] = _split(params, index, (math.prod(gamma_shape),), (math.prod(beta_shape),))
    elif node.kind == "relu":
        reader.expect("relu_")
    elif node.kind in ("max_pool", "avg_pool"):
        reader.expect(f"{node.kind}_2")
        window_y, window_x, stride_y, stride_x = (reader.integer() for _ in range(4))
        padding = (reader.integer(), reader.integer())
        window, stride = node.arg
        if (window_y, window_x, stride_y, stride_x) != (window, window, stride, stride) or padding != (0, 0):
            raise DescriptorFormatError(f"layer {index}: unexpected pooling {window_y}x{window_x}/{stride_y}")
    elif node.kind == "add_prev":
        reader.expect("add_prev_")
    elif node.kind == "fc":
        reader.expect("fc_2")
        outputs, inputs = reader.integer(), reader.integer()
        params = reader.tensor()
        reader.shape()  # the weights: (inputs, outputs)
        reader.shape()  # the biases, unused without one
        if reader.integer() != 1:  # FC_NO_BIAS
            raise DescriptorFormatError(f"layer {index}: the descriptor layer has a bias")
        for _ in range(4):
            reader.real()
        if outputs != node.arg[0]:
            raise DescriptorFormatError(f"layer {index}: {outputs} outputs, expected {node.arg[0]}")
        weights.tensors[index] = _split(params, index, (inputs, outputs))


def _read_layer_tail(reader: _Reader, version: int) -> None:
    """What add_layer stores after a layer's details: state flags and (empty) work tensors."""
    for _ in range(3):
        reader.boolean()
    reader.tensor()  # x_grad
    reader.tensor()  # cached_output
    if version >= 2:
        reader.tensor()  # params_grad / grad_final


def parse_descriptor_file(data: bytes) -> _Weights:
    """The weights of anet_type from the bytes of dlib_face_recognition_resnet_model_v1.dat."""
    nodes = _architecture()
    reader = _Reader(data)
    reader.version(1)  # add_loss_layer
    if reader.expect("loss_metric_", "loss_metric_2") == "loss_metric_2":
        reader.real()  # margin
        reader.real()  # distance threshold
    versions: list[int] = []
    for index in range(len(nodes) - 1, -1, -1):  # outermost first
        node = nodes[index]
        if node.kind in ("tag", "skip"):
            reader.version(1)
        elif index == 0:
            versions.append(reader.version(2, 3))  # the layer over the input
        else:
            versions.append(reader.version(1, 2))
    reader.expect("input_rgb_image_sized")
    weights = _Weights(channel_means=(reader.real(), reader.real(), reader.real()))
    if (reader.integer(), reader.integer()) != (CHIP_SIZE, CHIP_SIZE):
        raise DescriptorFormatError(f"the network does not take {CHIP_SIZE} px chips")
    layer_versions = iter(reversed(versions))
    for index, node in enumerate(nodes):  # innermost first
        if node.kind in ("tag", "skip"):
            continue
        version = next(layer_versions)
        _read_details(reader, node, index, weights)
        _read_layer_tail(reader, version)
        if index == 0 and version >= 3:
            reader.integer()  # sample expansion factor
    if reader.offset != len(data):
        raise DescriptorFormatError(f"{len(data) - reader.offset} bytes left after the network")
    return weights


def _add_padded(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """dlib's tt::add for unequal shapes: both placed top-left on the larger canvas, zeros elsewhere."""
    channels = max(first.shape[1], second.shape[1])
    rows = max(first.shape[2], second.shape[2])
    cols = max(first.shape[3], second.shape[3])

    def grow(tensor: torch.Tensor) -> torch.Tensor:
        pad = (0, cols - tensor.shape[3], 0, rows - tensor.shape[2], 0, channels - tensor.shape[1])
        return functional.pad(tensor, pad) if any(pad) else tensor

    return grow(first) + grow(second)


class FaceDescriptorNet(nn.Module):
    """dlib's face-descriptor ResNet: (N, 3, 150, 150) RGB chips in 0-255 -> (N, 128) descriptors.

    Frozen (its tensors are buffers): it is a fixed measuring instrument through which gradients
    reach the image, as dlib's own network is for scoring.
    """

    def __init__(self, weights: _Weights) -> None:
        super().__init__()
        self.nodes = _architecture()
        self.channel_means: torch.Tensor
        self.register_buffer("channel_means", torch.tensor(weights.channel_means).view(1, 3, 1, 1))
        for index, arrays in weights.tensors.items():
            for slot, array in enumerate(arrays):
                self.register_buffer(f"t{index}_{slot}", torch.from_numpy(array.copy()))

    def _tensor(self, index: int, slot: int) -> torch.Tensor:
        tensor: torch.Tensor = getattr(self, f"t{index}_{slot}")
        return tensor

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips.float() - self.channel_means) / 256.0
        tags: dict[int, torch.Tensor] = {}
        for index, node in enumerate(self.nodes):
            if node.kind == "tag":
                tags[node.arg[0]] = x
            elif node.kind == "skip":
                x = tags[node.arg[0]]
            elif node.kind == "con":
                _, window, stride = node.arg
                padding = 0 if stride != 1 else window // 2
                x = functional.conv2d(
                    x, self._tensor(index, 0), self._tensor(index, 1), stride=stride, padding=padding
                )
            elif node.kind == "affine":
                gamma, beta = self._tensor(index, 0), self._tensor(index, 1)
                x = x * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)
            elif node.kind == "relu":
                x = functional.relu(x)
            elif node.kind == "max_pool":
                x = functional.max_pool2d(x, node.arg[0], node.arg[1])
            elif node.kind == "avg_pool":
                window, stride = node.arg  # window 0: dlib's avg_pool_everything
                if window == 0:
                    x = x.mean(dim=(2, 3), keepdim=True)
                else:
                    x = functional.avg_pool2d(x, window, stride)
            elif node.kind == "add_prev":
                x = _add_padded(x, tags[node.arg[0]])
            elif node.kind == "fc":
                x = x.flatten(start_dim=1) @ self._tensor(index, 0)
        return x


@functools.cache
def _parsed(path: str) -> _Weights:
    return parse_descriptor_file(Path(path).read_bytes())


def load_face_descriptor(path: str | Path, device: torch.device) -> FaceDescriptorNet:
    """The port with the weights of dlib's .dat at `path` (parsed once per process), frozen, in eval."""
    net = FaceDescriptorNet(_parsed(str(path))).to(device)
    net.requires_grad_(False)
    return net.eval()


def chip_transform(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The 2x3 similarity mapping chip pixels to image pixels, as dlib's get_face_chip_details.

    Least-squares fit (Umeyama, as dlib's find_similarity_transform) of the padded template,
    scaled to the chip, onto the five detected landmarks.
    """
    source = (padding + CHIP_TEMPLATE_5) / (2 * padding + 1) * size
    target = np.asarray(landmarks, dtype=np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (source_centered**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ sign)) / variance
    linear = scale * rotation
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def aligned_chips(
    images: torch.Tensor, landmarks: list[np.ndarray], size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> torch.Tensor:
    """Differentiable 5-point aligned face chips (bilinear grid_sample), one per image.

    images (N, C, H, W), any value range; landmarks[i] the (5, 2) points of image i in pixels
    (found on a detached copy: the warp is fixed, the pixel values carry the gradient).
    Chip pixel (c, r) samples image point T(c, r), as dlib's extract_image_chip. Where the face
    is several times larger than the chip, dlib samples a pyramid level instead of the full image
    (plain bilinear sampling would alias); here the image is first box-averaged by the integer
    factor that brings the face closest to the chip's scale.
    """
    chips = []
    steps = torch.arange(size, dtype=torch.float64)
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    chip_points = torch.stack([cols, rows, torch.ones_like(cols)], dim=-1)  # (size, size, 3)
    for image, points in zip(images, landmarks, strict=True):
        transform = chip_transform(points, size, padding)
        factor = max(1, int(np.sqrt(abs(np.linalg.det(transform[:, :2])))))
        source = functional.avg_pool2d(image[None].float(), factor) if factor > 1 else image[None].float()
        height, width = source.shape[-2:]
        # Pixel centre p of the full image is (p + 0.5) / factor - 0.5 in the averaged one.
        image_points = ((chip_points @ torch.from_numpy(transform).T) + 0.5) / factor - 0.5
        grid = torch.stack(
            [image_points[..., 0] / (width - 1) * 2 - 1, image_points[..., 1] / (height - 1) * 2 - 1], dim=-1
        )
        chips.append(
            functional.grid_sample(
                source, grid[None].to(images.device, torch.float32), mode="bilinear", align_corners=True
            )
        )
    return torch.cat(chips)
