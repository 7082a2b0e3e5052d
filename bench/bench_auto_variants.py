"""auto variants measured for BENCHMARKS.md ("auto: exploring missing classes"): registered here, not in
the package, and run through bench_efficiency's protocol.

    python bench/bench_auto_variants.py --dataset fmnist,fmnist-lt --strategies xtp,xmiss:first=2 \
        --arms ours --timing "" --seeds 5 --out s15_autoexp_f2

xtp: on loose pools TypiClust below ``first`` labels per class, then ProbCover to ``cold_to``, then
margin (tight pools, neighbour ratio below ``cut``: ProbCover from the start). xmiss: TypiClust, but
ProbCover from ``first`` labels per class while a declared class has no label (``first=2`` is
auto's rule now).
"""
import sys
from alwidget.strategies._common import register, call, Context
from alwidget.strategies.auto import pick_cold_start


def _run(ctx, k, cut, cold_to, n_classes, params, cold_name):
    """Margin from ``cold_to`` labels per class; before, ``cold_name(start, seen, C, per)``'s choice."""
    start, _ = pick_cold_start(ctx, "auto", float(cut))
    seen = int(ctx.seen_classes.size)
    C = max(int(n_classes) if n_classes is not None else seen, 1)
    per = ctx.labelled.size / C
    name = cold_name(start, seen, C, per) if seen < 2 or per < cold_to else "margin"
    return call(name, ctx, k, dict(params, n_classes=n_classes))


@register("xtp", summary="exp: TypiClust below `first` per class, then ProbCover, on loose pools")
def xtp(ctx: Context, k: int, *, first: float = 1.0, cold_to: float = 5.0, cut: float = 0.45, n_classes=None, **params):
    return _run(ctx, k, cut, cold_to, n_classes, params,
                lambda start, seen, C, per: "typiclust" if start == "typiclust" and per < first else "probcover")


@register("xmiss", summary="exp: TypiClust; ProbCover from `first` per class while a declared class has no label")
def xmiss(ctx: Context, k: int, *, first: float = 1.0, cold_to: float = 5.0, cut: float = 0.45, n_classes=None,
          **params):
    return _run(ctx, k, cut, cold_to, n_classes, params,
                lambda start, seen, C, per: "probcover" if start == "typiclust" and per >= first and seen < C else start)


if __name__ == "__main__":
    import bench_efficiency as E
    sys.exit(E.main(sys.argv[1:]))
