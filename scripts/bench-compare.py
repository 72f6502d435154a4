#!/usr/bin/env python3
"""Compare two saved runs of scripts/bench.sh: `scripts/bench.sh compare BASE [RUN]`.

Prints, per workload found in both, records/s, CPU s and peak RSS MB of RUN with their ratio to
BASE (records/s above 1 = faster; CPU and RSS above 1 = more), then every target line of RUN
beside BASE's value, marking the verdicts that changed. A workload or target in only one of
the two is listed as such. Exit 0 (figures are reported, never asserted); 2 on unreadable input.
"""
import re
import sys

# `row` lines: name records out_MB wall_s records/s MB/s cpu_s rss_MB [ratio…]
ROW = re.compile(r"^(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)(?:\s|$)")
# `target` lines: target NAME VALUE OP GOAL met|missed
TARGET = re.compile(r"^target (.+?)\s+(-?[\d.]+) (<=|>=|<|>|=) (\S+)\s+(met|missed)\s*$")


def parse(path):
    rows, targets = {}, {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        print(f"bench compare: cannot read {path}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    for line in lines:
        m = TARGET.match(line)
        if m:
            targets[m.group(1)] = (float(m.group(2)), m.group(3), m.group(4), m.group(5))
            continue
        m = ROW.match(line)
        if m and m.group(1) != "workload":
            rows[m.group(1)] = {"records/s": float(m.group(5)), "cpu_s": float(m.group(7)), "rss_MB": float(m.group(8))}
    if not rows and not targets:
        print(f"bench compare: {path} holds no workload or target lines of scripts/bench.sh", file=sys.stderr)
        sys.exit(2)
    return rows, targets


def ratio(new, old):
    return f"{new / old:6.2f}x" if old else "     -"


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: scripts/bench.sh compare BASE [RUN]   (RUN: the latest saved run)", file=sys.stderr)
        return 2
    base_path, run_path = argv[1], argv[2] if len(argv) == 3 else None
    base_rows, base_targets = parse(base_path)
    rows, targets = parse(run_path)
    print(f"# {run_path} against {base_path}")
    print(f"{'workload':<34} {'records/s':>12} {'ratio':>7} {'cpu_s':>8} {'ratio':>7} {'rss_MB':>8} {'ratio':>7}")
    for name, r in rows.items():
        b = base_rows.get(name)
        if b is None:
            print(f"{name:<34} {r['records/s']:>12.0f}  (not in BASE)")
            continue
        print(
            f"{name:<34} {r['records/s']:>12.0f} {ratio(r['records/s'], b['records/s'])} "
            f"{r['cpu_s']:>8.2f} {ratio(r['cpu_s'], b['cpu_s'])} {r['rss_MB']:>8.1f} {ratio(r['rss_MB'], b['rss_MB'])}"
        )
    for name in base_rows.keys() - rows.keys():
        print(f"{name:<34} (only in BASE)")
    print()
    for name, (value, op, goal, verdict) in targets.items():
        b = base_targets.get(name)
        if b is None:
            print(f"target {name:<48} {value:>12.2f} {op} {goal:<10} {verdict:<6}  (not in BASE)")
            continue
        change = "" if b[3] == verdict else f"  WAS {b[3].upper()}"
        print(f"target {name:<48} {value:>12.2f} {op} {goal:<10} {verdict:<6} base {b[0]:>12.2f} {ratio(value, b[0])}{change}")
    for name in base_targets.keys() - targets.keys():
        print(f"target {name:<48} (only in BASE)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
