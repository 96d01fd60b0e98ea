"""The results page's section "Run to run": the spread of Frey Face, Nz = 20, over shuffles and
seeds (the runs of ``reproduce run spread``), and the same command on another machine, each
number computed from the runs (:func:`spread_text`)."""
import statistics

from .bench.machine import platform_words
from .figure2 import at, sci
from .results import differing_point
from .runs import ADAGRAD_WARMUP, BATCH_SIZE

SPREAD_POINTS = (10**6, 10**7)


def _count(items, word):
    return f"{len(items)} {word}{'' if len(items) == 1 else 's'}"


def spread_numbers(spread, samples, key="test_elbo"):
    """``{(split seed, seed): bound}`` of the spread runs at ``samples`` (those that reached it)."""
    return {(run["experiment"].split_seed, run["experiment"].seed): r[key]
            for run in spread.values() if (r := at(run["records"], samples))}


def spread_text(spread, runs):
    """The spread of Frey Face, Nz = 20, over shuffles and seeds (the runs of ``reproduce run
    spread``, archived), at 10^6 and 10^7 samples, where the runs ran, and how the same command
    compares on another machine (``runs``' archived frey-z20)."""
    if not spread:
        return ("(The spread runs, `scratchvae reproduce run spread`, have not been run: 3 shuffles "
                "x 3 seeds of Nz = 20.)")
    shuffles = sorted({run["experiment"].split_seed for run in spread.values()})
    seeds = sorted({run["experiment"].seed for run in spread.values()})
    z = sorted({run["experiment"].z_dim for run in spread.values()})
    text = [f"`scratchvae reproduce run spread` trains Nz = {', '.join(map(str, z))} on {_count(shuffles, 'shuffle')} "
            f"(`-s`, the held-out frames) with {_count(seeds, 'seed')} of the run itself each "
            "(`-r`: initial weights, minibatch order, noise), on one machine. Held-out bound "
            "(training bound in brackets):"]
    seed_ranges = {}
    for n in SPREAD_POINTS:
        test, train = spread_numbers(spread, n), spread_numbers(spread, n, "train_elbo")
        if not test:
            command = "scratchvae reproduce run spread" + (f" --samples {n}" if n != 10**7 else "")
            text.append(f"\n\nAt {sci(n)}: not reached yet (`{command}`).")
            continue
        head = ["shuffle"] + [f"seed {r}" for r in seeds] + ["range over seeds"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in shuffles:
            mine = [test[(s, r)] for r in seeds if (s, r) in test]
            cells = [f"{test[(s, r)]:.0f} ({train[(s, r)]:.0f})" if (s, r) in test else "-" for r in seeds]
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {max(mine) - min(mine):.0f} |" if mine
                         else f"| {s} | " + " | ".join(cells) + " | - |")
        values = list(test.values())
        by_shuffle = [statistics.mean(v for (s, _), v in test.items() if s == s0) for s0 in shuffles
                      if any(k[0] == s0 for k in test)]
        by_seed = [max(v for (s, _), v in test.items() if s == s0) - min(v for (s, _), v in test.items() if s == s0)
                   for s0 in shuffles if any(k[0] == s0 for k in test)]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        seed_ranges[n] = (min(by_seed), max(by_seed))
        seeds_spread = (f"{min(by_seed):.0f}" if f"{min(by_seed):.0f}" == f"{max(by_seed):.0f}"
                        else f"{min(by_seed):.0f} to {max(by_seed):.0f}")
        shuffles_spread = ("" if len(by_shuffle) < 2 else
                           f"; the means of the {len(by_shuffle)} shuffles by {max(by_shuffle) - min(by_shuffle):.0f}")
        text.append(f"\n\nAt {sci(n)} samples ({len(values)} runs):\n\n" + "\n".join(lines)
                    + f"\n\nAll {len(values)}: held-out mean {statistics.mean(values):.0f}, standard "
                    f"deviation {sd:.0f}, from {min(values):.0f} to {max(values):.0f} "
                    f"({max(values) - min(values):.0f} nats). The seeds of one shuffle spread by "
                    f"{seeds_spread} nats{shuffles_spread}.")
    where = {w for run in spread.values() if (w := platform_words(run.get("platform")))}
    if where:
        text.append(f"\n\nThe spread runs ran on {'; '.join(sorted(where))}, one thread each.")
    text.append(" " + _other_machine(spread, runs, seed_ranges))
    return "".join(text).rstrip()


def _other_machine(spread, runs, seed_ranges, name="frey-z20"):
    """The spread's run of ``name`` (shuffle 0, seed 0) beside the archived run of the same
    command in the results table: bitwise the same, or how far apart, from where on.
    ``seed_ranges``: ``{samples: (smallest, largest) range over the seeds of one shuffle}``."""
    mine, theirs = spread.get(name), runs.get(name)
    if not mine or not theirs or differing_point(mine["records"], theirs["records"]) is None:
        return ""
    c = differing_point(mine["records"], theirs["records"])
    here, there = platform_words(mine.get("platform")), platform_words(theirs.get("platform"))
    machine = f"made on {there}" if there else "made before runs recorded their machine"
    if c["first_difference"] is None:
        return (f"Its {name} (shuffle 0, seed 0) repeats the records of the table's {name} "
                f"({machine}) bit for bit at all {c['points']} evaluation points both reached.")
    theirs_at = {r["samples"]: r for r in theirs["records"]}
    gaps = [(r["samples"], max(abs(r[k] - theirs_at[r["samples"]][k]) for k in ("train_elbo", "test_elbo")))
            for r in mine["records"] if r["samples"] in theirs_at]
    (n0, d0), (n_last, _) = gaps[0], gaps[-1]
    first_big = next(((n, d) for n, d in gaps if d > 0.1), None)
    a, b = at(mine["records"], n_last), at(theirs["records"], n_last)
    warm = ", before Adagrad's first update" if n0 <= ADAGRAD_WARMUP * BATCH_SIZE else ""
    text = (f"Its {name} (shuffle 0, seed 0) is the command of the table's {name} ({machine}) run "
            f"again{' on the same kind of machine' if here is not None and here == there else ''}: "
            f"{c['identical']} of the {c['points']} evaluation points both reached are identical. "
            f"At the first ({n0:.2g} samples{warm}) the bounds differ by {d0:.1g} nats, the "
            f"rounding of float32 matrix products")
    if first_big:
        text += (f"; the training steps carry and grow it: {first_big[1]:.2g} nats at "
                 f"{first_big[0]:.2g} samples")
    text += (f", and at {sci(n_last)} {a['train_elbo']:.0f} / {a['test_elbo']:.0f} (train / held-out) "
             f"against the table's {b['train_elbo']:.0f} / {b['test_elbo']:.0f}.")
    if n_last in seed_ranges:
        lo, hi = seed_ranges[n_last]
        gap = abs(a["test_elbo"] - b["test_elbo"])
        where = ("within" if gap <= hi else "beyond")
        span = f"{lo:.0f}" if f"{lo:.0f}" == f"{hi:.0f}" else f"{lo:.0f} to {hi:.0f}"
        text += (f" That held-out difference, {gap:.0f} nats, is {where} the range of the seeds of "
                 f"one shuffle here ({span} nats).")
    return text + (" A result is bitwise reproducible only on one CPU and BLAS kernel: another "
                   "kernel rounds the matrix products differently, and training carries the "
                   "difference on.")
