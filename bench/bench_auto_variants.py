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


def _phase(ctx, n_classes):
    L = int(ctx.labelled.size); seen = int(ctx.seen_classes.size)
    C = max(int(n_classes) if n_classes is not None else seen, 1)
    return L, seen, C, L / C


@register("xtp", summary="exp: TC first batch then PC on loose pools")
def xtp(ctx: Context, k: int, *, first: float = 1.0, cold_to: float = 5.0, cut: float = 0.45, n_classes=None, **params):
    cold, _ = pick_cold_start(ctx, "auto", float(cut))
    _, seen, C, per = _phase(ctx, n_classes)
    params = dict(params, n_classes=n_classes)
    if seen < 2 or per < cold_to:
        name = "typiclust" if (cold == "typiclust" and per < first) else "probcover"
    else:
        name = "margin"
    return call(name, ctx, k, params)


@register("xmiss", summary="exp: TC; PC while a declared class has no label (after first batch)")
def xmiss(ctx: Context, k: int, *, first: float = 1.0, cold_to: float = 5.0, cut: float = 0.45, n_classes=None, **params):
    cold, _ = pick_cold_start(ctx, "auto", float(cut))
    _, seen, C, per = _phase(ctx, n_classes)
    params = dict(params, n_classes=n_classes)
    if seen < 2 or per < cold_to:
        name = cold
        if cold == "typiclust" and per >= first and seen < C:
            name = "probcover"
    else:
        name = "margin"
    return call(name, ctx, k, params)


if __name__ == "__main__":
    import bench_efficiency as E
    sys.exit(E.main(sys.argv[1:]))
