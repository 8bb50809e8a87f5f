# The public API (dglmm/api.py, docs/api.md), loaded on first use so that `import dglmm` stays cheap:
#     import dglmm
#     run = dglmm.fit("lightgcn", "synthetic")
#     run.recommend(users=["0", "1"], k=10)
#     dglmm.compare_runs(dglmm.load("runs/<baseline>"), run)
_PUBLIC = ("Run", "build_graph", "compare_runs", "describe", "fit", "load", "load_dataset", "model_class",
           "model_names")


def __getattr__(name: str):
    if name in _PUBLIC:
        from dglmm import api

        return getattr(api, name)
    raise AttributeError(f"module 'dglmm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
