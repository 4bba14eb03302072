"""A user's own architecture (not from the model zoo) for the --model package.module:factory test."""
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.ReLU()
        self.l1 = nn.Linear(4 * 8 * 8, 16)
        self.b = nn.ReLU()
        self.l2 = nn.Linear(16, 10)

    def forward(self, x):
        x = self.a(self.c(x))
        return self.l2(self.b(self.l1(torch.flatten(x, 1))))


def build() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()
