"""The samplers moved below the models, to :mod:`dglmm.data.sampler`; this name stays importable for code
written against it."""

from dglmm.data.sampler import BPRSampler, CFSampler, ExtraSampler, KGTripleSampler

__all__ = ["BPRSampler", "CFSampler", "ExtraSampler", "KGTripleSampler"]
