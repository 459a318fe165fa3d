"""Compression passes over torch modules: pruning (magnitude, network slimming, BN statistics,
complexity-driven, feature-map similarity, learned sparse connectivity), post-training
quantization and binarization.

Structured passes return a physically smaller ``torch.fx.GraphModule`` (same module names,
trainable) built by :func:`remove_channels` from the channel classes of :func:`analyze`.
"""
from nets.compress.bn_importance import bn_stat_scores, expected_activation, prune_bn_stats
from nets.compress.calib import as_batches, recalibrate_bn
from nets.compress.complexity import MODES, class_costs, group_shares, prune_complexity, select_layers
from nets.compress.connectivity import GRANULARITIES, SparseConnectivity, remove_dead_filters
from nets.compress.deps import ChannelGroup, DependencyGraph, analyze
from nets.compress.errors import CalibrationError, CompressError, RatioError, UnprunableError
from nets.compress.magnitude import (
                                     SPARSITY_SUPPORT,
                                     filter_scores,
                                     make_permanent,
                                     prune_filters,
                                     prune_unstructured,
                                     weight_sparsity,
)
from nets.compress.quantize import PTQResult, binarize, quantize_ptq, quantize_xnor
from nets.compress.select import prune_by_scores, select_channels
from nets.compress.similarity import compensate, feature_maps, greedy_order, prune_similar, similarity_scores
from nets.compress.slimming import SlimmingHook, bn_l1_penalty, gamma_scores, slim, slimming_hook
from nets.compress.surgery import mask_channels, predicted_counts, remove_channels

__all__ = [
    "ChannelGroup", "DependencyGraph", "analyze",
    "CompressError", "UnprunableError", "RatioError", "CalibrationError",
    "select_channels", "prune_by_scores", "remove_channels", "mask_channels", "predicted_counts",
    "SPARSITY_SUPPORT", "prune_unstructured", "make_permanent", "weight_sparsity", "filter_scores", "prune_filters",
    "bn_l1_penalty", "slimming_hook", "SlimmingHook", "gamma_scores", "slim",
    "expected_activation", "bn_stat_scores", "prune_bn_stats",
    "MODES", "class_costs", "group_shares", "select_layers", "prune_complexity",
    "feature_maps", "greedy_order", "similarity_scores", "compensate", "prune_similar",
    "GRANULARITIES", "SparseConnectivity", "remove_dead_filters",
    "as_batches", "recalibrate_bn",
    "PTQResult", "quantize_ptq", "binarize", "quantize_xnor",
]
