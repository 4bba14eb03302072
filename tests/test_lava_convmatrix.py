"""backends.lava.convmatrix against Lava's own conv_to_sparse (which takes Lava's flipped (C_out, kW, kH, C_in)
kernel) and against torch's conv2d: the same (out, in) matrix for asymmetric kernels, strides, padding, dilation
and groups on non-square inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix

import backends.lava  # noqa: F401  (its import carries lava-nc's Python 3.11 fix)
from backends.lava.convmatrix import conv_matrix
from lava.proc.conv.utils import conv_to_sparse

CASES = [  # (C_in, H, W), C_out, (kH, kW), stride, padding, dilation, groups: torch's (H, W) order
    ((2, 7, 5), 4, (3, 2), (2, 1), (1, 0), (1, 1), 1),
    ((4, 6, 9), 6, (3, 3), (1, 2), (1, 1), (2, 1), 2),
    ((3, 5, 4), 3, (1, 2), (1, 1), (0, 1), (1, 1), 3),
]


@pytest.mark.parametrize("in_shape, c_out, kernel, stride, padding, dilation, groups", CASES)
def test_conv_matrix_is_lavas_conv_to_sparse_and_torchs_conv2d(in_shape, c_out, kernel, stride, padding, dilation,
                                                               groups):
    rng = np.random.default_rng(0)
    weight = rng.integers(-9, 10, (c_out, in_shape[0] // groups, *kernel)).astype(np.float64)
    x = rng.integers(-3, 4, (1, *in_shape)).astype(np.float64)
    torch_out = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(weight), stride=stride, padding=padding,
                                           dilation=dilation, groups=groups)[0].numpy()
    in_xyc, out_xyc = in_shape[::-1], torch_out.shape[::-1]     # Lava's (X, Y, C) = torch's (C, H, W) reversed
    ours = conv_matrix(in_xyc, out_xyc, weight, stride, padding, dilation, groups)
    lava_kernel = weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]
    dst, src, wgt = conv_to_sparse(in_xyc, out_xyc, lava_kernel, stride[::-1], padding[::-1], dilation[::-1], groups)
    lava = csr_matrix((wgt, (dst, src)), shape=ours.shape)
    assert ours.nnz == lava.nnz
    np.testing.assert_array_equal(ours.toarray(), lava.toarray())
    np.testing.assert_array_equal(ours @ x[0].T.reshape(-1), torch_out.T.reshape(-1))


def test_conv_matrix_refuses_a_weight_that_does_not_fit_the_shapes():
    with pytest.raises(ValueError, match="groups"):
        conv_matrix((5, 7, 2), (5, 7, 4), np.ones((4, 2, 3, 3)), (1, 1), (1, 1), (1, 1), 2)
