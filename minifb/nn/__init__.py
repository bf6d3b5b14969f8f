"""Neural-network building blocks: Module, layers, containers, feedback and recurrence.

Use as ``from minifb import nn``.  See :mod:`minifb.nn.feedback` for how
FeedbackChain, Splitter and Merger work, and :mod:`minifb.nn.recurrent` for
Recur and the recurrent cells.
"""

from .containers import Chain, Parallel, SkipConnection
from .feedback import FeedbackChain, FeedbackTree, Merger, Splitter
from .layers import (
    LRN, BatchNorm, Conv, ConvTranspose, Dense, Dropout, Flatten, GlobalMaxPool, GlobalMeanPool, Lambda,
    MaxPool, MeanPool,
)
from .module import Buffer, Module, Parameter
from .recurrent import (
    GRU, LSTM, RNN, ConvLSTMCell, GRUCell, LSTMCell, Recur, RNNCell, detach_state, reset_state, unroll,
)

__all__ = [
    "Module", "Parameter", "Buffer",
    "Dense", "Conv", "ConvTranspose", "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool", "Flatten",
    "Dropout", "BatchNorm", "LRN", "Lambda",
    "Chain", "SkipConnection", "Parallel",
    "Splitter", "Merger", "FeedbackChain", "FeedbackTree",
    "Recur", "RNNCell", "LSTMCell", "GRUCell", "ConvLSTMCell", "RNN", "LSTM", "GRU", "unroll",
    "reset_state", "detach_state",
]
