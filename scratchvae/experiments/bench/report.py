"""The report: the table printed on stdout, and the JSON file."""
import json
import os
from pathlib import Path

from .comparisons import FREY_UNIT_EPOCHS
from .contenders import CONTENDERS
from .machine import QUIET_LOAD


def _s(value):
    return "-" if value is None else f"{value:.3f}"


def _x(value):
    return "-" if value is None else f"{value:.2f}x"


def _spread(sp):
    """``median (min-max)`` of one contender, in the table's unit."""
    return "-" if sp is None else f"{sp['median']:.3f} ({sp['min']:.3f}-{sp['max']:.3f})"


def _quiet(q):
    others = "-" if q["others_cores"] is None else f"{q['others_cores']:.2f}"
    return (f"load {q['load_before'][0]:.2f} -> {q['load_after'][0]:.2f}, others used {others} "
            f"cores" + ("  NOISY: other work ran" if q["noisy"] else ""))


def format_table(report):
    cfg, mach = report["config"], report["machine"]
    blas = mach["blas"]
    threads = cfg["threads"]
    lines = [f"scratchvae bench: {cfg['model']}, Adam lr {cfg['lr']:g}, float32, {cfg['data']}; "
             f"median (min-max) of {cfg['repeats']} interleaved epochs; threads "
             + ", ".join(map(str, threads)) + f" (the headline: {threads[0]}"
             + (", the library's rule" if threads[0] == 1 else "") + ")",
             f"CPU: {mach['cpu']} ({mach['cpus']} CPUs); BLAS: {blas.get('library')} "
             f"{blas.get('version') or ''}, kernel {blas.get('kernel')}"
             + (f", OPENBLAS_CORETYPE={blas['openblas_coretype']}" if blas.get("openblas_coretype")
                else "") + f"; NumPy {mach['numpy']}; PyTorch {report['torch']['version'] or '-'}",
             f"load average {mach['load_before'][0]:.2f} before, {mach['load_after'][0]:.2f} after"
             + ("; the machine was NOT quiet (load above "
                f"{QUIET_LOAD} per core, or other processes used the CPUs): treat the ratios as noisy"
                if report.get("noisy") else "; quiet")]
    if report["torch"]["version"] is None:
        lines.append(f"PyTorch: not compared ({report['torch']['why_not']}); "
                     "scratchvae against the GEMM floor only")
    head = (f"{'batch':>5} {'steps':>5} {'thr':>3} | {'scratchvae':>19} {'sv overlapped':>19} {'torch':>19} "
            f"{'torch fused':>19} {'GEMM floor':>19} | {'/torch':>6} {'/fused':>6} {'/GEMM':>6} {'ovl/sv':>6}")
    lines += [head, "-" * len(head)]
    comparisons = [r for batch_size in cfg["batch_sizes"] for n in threads
                   for r in [report["comparisons"].get(str(n), {}).get(str(batch_size))] if r]
    for r in comparisons:
        sp, q = r["spread_s"], r["ratios"]
        lines.append(f"{r['batch_size']:>5} {r['steps_per_epoch']:>5} {r['threads']:>3} | "
                     + " ".join(f"{_spread(sp.get(k)):>19}" for k in CONTENDERS) + " | "
                     f"{_x(q.get('scratchvae/torch')):>6} {_x(q.get('scratchvae/torch_fused')):>6} "
                     f"{_x(q.get('scratchvae/gemm_floor')):>6} {_x(q.get('scratchvae_overlap/scratchvae')):>6}")
    lines.append("(seconds per epoch; thr: BLAS and PyTorch threads; /torch, /fused, /GEMM: "
                 "scratchvae's median over theirs; ovl/sv: the overlapped step's over the plain one's)")
    for r in comparisons:
        e = r["heldout_nelbo"]
        nelbo = ", ".join(f"{e[k]:.2f}" if k in e else "-"
                          for k in ("scratchvae", "scratchvae_overlap", "torch", "torch_fused"))
        verdict = "" if len(e) < 2 else ("ok" if r["valid"] else
                                          f"VOID: differ by {r['nelbo_spread']:.1f} nats")
        steps = r.get("scratchvae_steps")
        tail = ("" if not steps else f"; scratchvae median step x steps {steps['median_step_x_steps_s']:.3f}"
                f" s, slowest tenth of steps {100 * steps['slowest_tenth_share']:.0f} % of the time")
        lines.append(f"batch {r['batch_size']}, {r['threads']} thread{'s' * (r['threads'] > 1)}: "
                     f"{_quiet(r['quiet'])}; overlap {r.get('overlap', '-')}; -ELBO after "
                     f"{r['heldout_after_epochs']} epochs (sv, overlapped, torch, fused) {nelbo} {verdict}{tail}")
    frey = report.get("frey")
    if frey:
        lines.append(f"Frey Face ({frey['model']}), milliseconds per step, median (min-max) of "
                     f"{cfg['frey_repeats']} interleaved units of {FREY_UNIT_EPOCHS} epochs:")
        for n, r in frey["threads"].items():
            sp = {k: {s: 1e3 * v for s, v in d.items()} for k, d in r["spread_step_s"].items()}
            e = r["heldout_nelbo"]
            lines.append(f"  {n} thread{'s' * (n != '1')}: scratchvae {_spread(sp['scratchvae'])}  "
                         f"overlapped {_spread(sp.get('scratchvae_overlap'))}  "
                         f"torch {_spread(sp.get('torch'))}  "
                         f"/torch {_x(r['ratios'].get('scratchvae/torch'))}  "
                         f"ovl/sv {_x(r['ratios'].get('scratchvae_overlap/scratchvae'))} | "
                         f"-ELBO after {r['agree_steps']} steps "
                         f"{', '.join(f'{v:.2f}' for v in r['agree_nelbo'].values())} "
                         f"{'same work' if r['valid'] else 'VOID: not the same work'}; after 3 units "
                         f"{', '.join(f'{v:.1f}' for v in e.values())} (rounding chaos) | "
                         f"{_quiet(r['quiet'])}; overlap {r.get('overlap', '-')}")
    for g in report["goals"]:
        state = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        lines.append(f"goal at {g['where']}: {g['what']} <= {g['at_most']}: {_x(g['value'])} {state}"
                     + (" (noisy)" if g["noisy"] and g["met"] is not None else ""))
    mem = report.get("memory")
    if mem:
        mib = 2.0 ** 20
        lines.append(f"memory, {mem['epochs']} epochs at batch {mem['batch_size']}: peak RSS "
                     f"{mem['peak_rss'] / mib:.1f} MiB; RSS after epoch 1 "
                     f"{mem['rss_per_epoch'][0] / mib:.1f} MiB, after epoch {mem['epochs']} "
                     f"{mem['rss_per_epoch'][-1] / mib:.1f} MiB (growth "
                     f"{mem['growth_after_first_epoch'] / mib:+.2f} MiB); one step allocates at most "
                     f"{mem['step_peak_traced'] / mib:.2f} MiB at once, one Adam update "
                     f"{mem['adam_step_traced']} bytes ({mem['parameters']} parameters)")
    if report.get("scale"):
        lines.append(f"scale ({cfg['scale_repeats']} interleaved epochs each):")
        lines.append(f"{'hidden':>6} {'batch':>5} | {'scratchvae':>10} {'fused':>7} {'GEMM':>7} | "
                     f"{'/fused':>6} {'/GEMM':>6}")
        for row in report["scale"]:
            m, q = row["median_s"], row["ratios"]
            lines.append(f"{row['hidden']:>6} {row['batch_size']:>5} | {_s(m.get('scratchvae')):>10} "
                         f"{_s(m.get('torch_fused')):>7} {_s(m.get('gemm_floor')):>7} | "
                         f"{_x(q.get('scratchvae/torch_fused')):>6} {_x(q.get('scratchvae/gemm_floor')):>6}")
    other = report.get("coretype_unset")
    if other:
        lines.append("")
        lines.append(f"The table above is the headline: OPENBLAS_CORETYPE={blas['openblas_coretype']} "
                     "as this environment sets it. The same measurement with it unset (OpenBLAS "
                     "picks its kernel for this CPU):")
        lines.append(format_table(other))
    return "\n".join(lines)


def write_json(report, path):
    """Write to a temporary file beside ``path``, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)
