"""Score auto's policies from the per-policy means that ``bench_auto_switch.py`` prints (its logs).

The grid of this session ran in two parts (``bench/results/bench_auto_switch_acc.log``: digits, fmnist-lt,
mnist; ``..._fmnist.log``: fmnist, TypiClust starts only: a ProbCover start there is 6.7 points behind
at 10 labels, 0.554 vs 0.621, so cuts that give fmnist a ProbCover start are left out). Each log line is
the mean over 5 seeds at 10/20/50/100/200 labels. For every cut on the neighbour ratio and every
(t1, t2) pair of each cold start: the shortfall from the best fixed strategy (TypiClust, ProbCover,
DropQuery, margin, BADGE) per set and budget, and a leave-one-set-out check.

    python bench/bench_auto_switch_logs.py bench/results/bench_auto_switch_acc.log bench/results/bench_auto_switch_acc_fmnist.log
"""
import re, sys, numpy as np
ratios = {"digits": 0.332, "fmnist": 0.489, "mnist": 0.415, "fmnist-lt": 0.509}
budgets = [10, 20, 50, 100, 200]
m = {}
for path in sys.argv[1:]:
    for line in open(path):
        p = line.split()
        if len(p) == 7 and p[0] in ratios:
            try:
                vals = [float(v) for v in p[2:]]
            except ValueError:
                continue
            for b, v in zip(budgets, vals):
                m[(p[0], p[1], b)] = v
sets = [s for s in ratios if all((s, f, 10) in m for f in ["typiclust", "probcover", "dropquery", "margin", "badge"])]
FIXED = ["typiclust", "probcover", "dropquery", "margin", "badge"]
best = {(s, b): max(m[(s, f, b)] for f in FIXED) for s in sets for b in budgets}
pairs = ["min_per_class=3+late_per_class=3", "min_per_class=5+late_per_class=5", "min_per_class=5+late_per_class=10"]
def pol(s, cold, pair):
    return f"auto:cold_start={cold}+{pair}"
rows = []
for cut in [0.0, 0.37, 0.45, 0.50, 1.0]:
    for ptc in pairs:
        for ppc in pairs:
            ch = {s: pol(s, "probcover" if ratios[s] < cut else "typiclust", ppc if ratios[s] < cut else ptc) for s in sets}
            if any((s, ch[s], 10) not in m for s in sets):
                # PC start on fmnist not run: at 10 labels it is ProbCover's 0.554, 6.7 points behind
                continue
            sh = np.array([[100 * (best[(s, b)] - m[(s, ch[s], b)]) for b in budgets] for s in sets])
            rows.append((round(sh.max(), 1), round(sh.mean(), 2), cut, ptc, ppc, sh))
rows.sort(key=lambda r: (r[0], r[1]))
print("sets", sets)
for w, mu, cut, ptc, ppc, sh in rows[:20]:
    print(f"cut {cut:<4} TC {ptc[12:]:<18} PC {ppc[12:]:<18} worst {w:.1f} mean {mu:.2f} | " + " ".join(f"{x:.1f}" for x in sh.max(1)))
print("shared pair:")
shared = [r for r in rows if r[3] == r[4]]
for w, mu, cut, ptc, ppc, sh in shared[:15]:
    print(f"cut {cut:<4} {ptc[12:]:<18} worst {w:.1f} mean {mu:.2f} | " + " | ".join(" ".join(f"{x:+.1f}" for x in row) for row in sh))
for name, cand in (("shared", shared), ("separate", rows)):
    print("LOSO", name)
    for i, s in enumerate(sets):
        keep = [j for j in range(len(sets)) if j != i]
        c = min(cand, key=lambda r: (round(r[5][keep].max(), 1), r[5][keep].mean()))
        print(f"  held out {s}: chosen cut {c[2]} TC {c[3][12:]} PC {c[4][12:]}; held-out worst {c[5][i].max():.1f}; best possible there {min(r[5][i].max() for r in cand):.1f}")
