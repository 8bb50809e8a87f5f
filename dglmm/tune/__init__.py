"""Hyper-parameter search on Optuna (``dglmm tune``): search spaces from the option declarations
(:mod:`dglmm.tune.space`), studies, workers and their outputs (:mod:`dglmm.tune.study`)."""

from dglmm.tune.study import TuneSettings, format_result, load_settings, plan_study, tune

__all__ = ["TuneSettings", "format_result", "load_settings", "plan_study", "tune"]
