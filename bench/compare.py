"""The comparison table of one or more JSONL files of records (peers and Kiln).

usage: python compare.py FILE.jsonl [MORE.jsonl ...] [--kiln] [--text] [--best-epoch] [--workloads "W1 W2"]
       python compare.py --record-failure SYSTEM WORKLOAD failed|missing "cause" FILE.jsonl

Markdown by default (--text: aligned plain text). Several records of one (system, workload)
show as median [min-max] n=K. --best-epoch takes each run's fastest epoch instead of its
median one. "kiln vs fastest" is a speed-up: above 1 Kiln is faster. The CPU pressure
column is the highest `cpu_pressure_60s` (Linux PSI "some avg60", % of time a runnable
task waited for a CPU) among the row's records: high values mean other load shared the CPUs.
A training run that learned nothing (`invalid`) shows as INVALID and is nobody's fastest time.
"""
import datetime
import json
import math
import statistics
import sys

WORKLOADS = ["gemm", "lenet5-train", "lenet5-infer", "mlp-b16", "vae-train", "mnist-cnn-train", "resnet18-train", "resnet18-infer",
             "resnet20-train", "resnet20-infer"]
PEERS = ["numpy", "pytorch-eager", "pytorch-compile", "jax-jit", "tinygrad"]
METRICS = {"gemm": "gflops", "lenet5-train": "epoch_seconds", "lenet5-infer": "images_per_second",
           "mlp-b16": "epoch_seconds", "vae-train": "epoch_seconds", "mnist-cnn-train": "epoch_seconds", "resnet18-train": "step_seconds",
           "resnet18-infer": "images_per_second", "resnet20-train": "step_seconds", "resnet20-infer": "images_per_second"}
UNITS = {"gflops": "GFLOP/s", "epoch_seconds": "s/epoch", "step_seconds": "s/step", "images_per_second": "images/s"}
SECONDS = {"epoch_seconds", "step_seconds"}


def record_failure(system, workload, kind, cause, path):
    rec = {"system": system, "workload": workload, "status": kind, "error": " ".join(cause.split())[:300],
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        with open("/proc/pressure/cpu") as f:
            rec["extra"] = {"cpu_pressure_60s": float(f.readline().split()[2].split("=")[1])}
    except (OSError, IndexError, ValueError):
        pass
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


# Ten classes: 0.10 is chance. torch.compile held to AVX2 trained LeNet-5 and the MLP to 0.10 and
# gave the VAE no ELBO, in less time than the runs that learned; such a time is not a result.
CHANCE_ACCURACY = 0.2
CLASSIFIERS = {"lenet5-train", "mlp-b16", "mnist-cnn-train"}


def invalid(r):
    """Why a record's run learned nothing (None when it learned): a classifier's test accuracy
    missing or at chance, or the VAE's test ELBO missing or not finite."""
    w = r.get("workload")
    if w in CLASSIFIERS:
        acc = r.get("test_accuracy")
        if not isinstance(acc, (int, float)) or not acc > CHANCE_ACCURACY:  # `not >` also catches NaN
            return f"test accuracy {acc} (chance is 0.10): it learned nothing"
    if w == "vae-train":
        elbo = r.get("test_neg_elbo")
        if not isinstance(elbo, (int, float)) or not math.isfinite(elbo):
            return f"test ELBO {elbo}: it learned nothing"
    return None


def read(paths, best_epoch):
    good, bad, hosts = {}, {}, set()
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError as e:
            print(f"warning: {e}", file=sys.stderr)
            continue
        for line in lines:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(r, dict):
                continue
            key = (r.get("system"), r.get("workload"))
            if r.get("status") in ("failed", "missing") or r.get("value") is None:
                bad[key] = r
                continue
            why = invalid(r)
            if why:
                bad[key] = dict(r, status="invalid", error=why)
                continue
            epochs = (r.get("extra") or {}).get("epoch_seconds")
            if best_epoch and r.get("metric") == "epoch_seconds" and epochs:
                r = dict(r, value=min(epochs))
            good.setdefault(key, []).append(r)
            if r.get("host"):
                hosts.add((r["host"], r.get("isa")))
    return good, bad, hosts


def number(v):
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def cell(records):
    values = [r["value"] for r in records]
    middle = statistics.median(values)
    text = number(middle)
    if len(values) > 1:
        text += f" [{number(min(values))}–{number(max(values))}] n={len(values)}"
    return middle, text


def pressure(records):
    seen = [(r.get("extra") or {}).get("cpu_pressure_60s") for r in records]
    seen = [p for p in seen if isinstance(p, (int, float))]
    return f"{max(seen):.1f}%" if seen else "n/a"


def table(good, bad, workloads, kiln):
    systems = [s for s in PEERS if any(k[0] == s for k in list(good) + list(bad))]
    kiln = kiln or any(k[0] == "kiln" for k in list(good) + list(bad))
    header = ["workload", "unit"] + systems + ["fastest peer"]
    if kiln:
        header += ["kiln", "kiln vs fastest"]
    header.append("max CPU pressure (avg60)")
    rows = []
    for w in workloads:
        metric = METRICS.get(w)
        if metric is None:
            continue
        lower = metric in SECONDS
        row, best, row_records = [w, UNITS[metric] + (" ↓" if lower else " ↑")], None, []
        for s in systems:
            if (s, w) in good:
                middle, text = cell(good[(s, w)])
                row.append(text)
                row_records += good[(s, w)]
                if best is None or (middle < best[1] if lower else middle > best[1]):
                    best = (s, middle)
            elif (s, w) in bad:
                row.append(bad[(s, w)].get("status", "failed").upper() if bad[(s, w)].get("status") != "missing" else "missing")
                row_records.append(bad[(s, w)])
            else:
                row.append("n/a")
        row.append(f"{best[0]} ({number(best[1])})" if best else "–")
        if kiln:
            if ("kiln", w) in good:
                middle, text = cell(good[("kiln", w)])
                row_records += good[("kiln", w)]
                row.append(text)
                row.append(f"{(best[1] / middle if lower else middle / best[1]):.2f}×" if best and middle else "–")
            else:
                failure = bad.get(("kiln", w))
                if failure:
                    row_records.append(failure)
                status = failure.get("status", "failed") if failure else "missing"
                row += [status if status == "missing" else status.upper(), "–"]
        row.append(pressure(row_records))
        rows.append(row)
    return header, rows


def details(good, bad):
    lines = []
    for (s, w), records in sorted(good.items(), key=lambda kv: (WORKLOADS.index(kv[0][1]) if kv[0][1] in WORKLOADS else 99, kv[0][0])):
        for r in records:
            bits = [f"{w:15s} {s:16s}"]
            for label, key, fmt in (("acc", "test_accuracy", ".4f"), ("neg_elbo", "test_neg_elbo", ".2f"),
                                    ("first_step_s", "compile_seconds", ".3f"), ("rss_mb", "peak_rss_mb", ".1f")):
                if r.get(key) is not None:
                    bits.append(f"{label}={r[key]:{fmt}}")
            extra = r.get("extra") or {}
            if "first_loss" in extra:
                bits.append(f"loss {extra['first_loss']}→{extra['last_loss']}")
            if "cpu_pressure_60s" in extra:
                bits.append(f"cpu_pressure_60s={extra['cpu_pressure_60s']}")
            if "core_round_trip_ns" in extra:  # Kiln's: how far apart the cores were (CoreRoundTrip.swift)
                bits.append(f"core_round_trip_ns={extra['core_round_trip_ns']}")
            lines.append("  " + " ".join(bits))
    for (s, w), r in sorted(bad.items()):
        lines.append(f"  {w:15s} {s:16s} {r.get('status', 'failed')}: {r.get('error', 'no value')}")
    return lines


def main(argv):
    if argv[:1] == ["--record-failure"]:
        record_failure(*argv[1:6])
        return 0
    workloads = WORKLOADS
    if "--workloads" in argv:
        i = argv.index("--workloads")
        workloads = argv[i + 1].split()
        del argv[i:i + 2]
    paths = [a for a in argv if not a.startswith("--")]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    good, bad, hosts = read(paths, "--best-epoch" in argv)
    by_host = {}
    for host, isa in hosts:
        by_host.setdefault(host, set()).update([isa] if isa else [])
    for host, isas in sorted(by_host.items()):
        if not isas:  # Kiln's records name the CPU but not its flags: read them here when it is this machine
            import common
            here, isa = common.cpu_info()
            isas = {isa + " (read now)"} if here == host else set()
        print(f"CPU: {host}; ISA: {' | '.join(sorted(isas)) or 'not recorded'}")
    header, rows = table(good, bad, workloads, "--kiln" in argv)
    if "--text" in argv:
        widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
        for r in [header] + rows:
            print("  ".join(str(x).ljust(width) for x, width in zip(r, widths)))
    else:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    lines = details(good, bad)
    if lines:
        print("\nper run:")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
