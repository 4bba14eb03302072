"""The (out, in) matrix of a 2-d convolution between tensors in Lava's (X, Y, C) layout, for Lava's Sparse process.

What lava.proc.conv.utils.conv_to_sparse builds (tests/test_lava_convmatrix.py checks it), in whole-array numpy
operations: conv_to_sparse loops in Python and goes through COO, about 35 s of VGG-16's 13 convolutions.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix


def conv_matrix(in_xyc: tuple, out_xyc: tuple, weight: np.ndarray, stride: tuple, padding: tuple,
                dilation: tuple, groups: int) -> csr_matrix:
    """torch's conv2d with `weight` (C_out, C_in / groups, kH, kW) and stride, padding, dilation in torch's (H, W)
    order, as a CSR matrix from the flattened (X, Y, C) input to the flattened (X, Y, C) output (zero padding has
    no entries). Row by row, the entries are (x tap, y tap, input channel) in C order."""
    size_x, size_y, size_c = in_xyc
    out_x, out_y, out_c = out_xyc
    c_out, c_group, k_h, k_w = weight.shape
    if c_out != out_c or c_group * groups != size_c:
        raise ValueError(f"weight {weight.shape} with {groups} groups does not map {in_xyc} to {out_xyc}")
    (s_y, s_x), (p_y, p_x), (d_y, d_x) = stride, padding, dilation
    # axes: output x, output y, output channel, x tap, y tap, input channel within the group
    xi = (np.arange(out_x) * s_x - p_x)[:, None, None, None, None, None] + (np.arange(k_w) * d_x)[:, None, None]
    yi = (np.arange(out_y) * s_y - p_y)[None, :, None, None, None, None] + (np.arange(k_h) * d_y)[:, None]
    ci = (np.arange(out_c) // (out_c // groups) * c_group)[:, None, None, None] + np.arange(c_group)
    full = (out_x, out_y, out_c, k_w, k_h, c_group)
    valid = np.broadcast_to((xi >= 0) & (xi < size_x) & (yi >= 0) & (yi < size_y), full)
    cols = np.broadcast_to((xi * size_y + yi) * size_c + ci, full)[valid].astype(np.int32)
    data = np.broadcast_to(weight.transpose(0, 3, 2, 1), full)[valid]
    per_row = valid.reshape(out_x * out_y * out_c, -1).sum(1)
    indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
    return csr_matrix((data, cols, indptr), shape=(out_x * out_y * out_c, size_x * size_y * size_c))
