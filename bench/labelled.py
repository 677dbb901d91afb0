"""Recall and false alarms per provider on a labelled corpus of made-up tokens.

Builds an image from ``tests/tokencorpus.py`` (true positives of 100+ providers written into
realistic files, and look-alike files that hold no secret), scans it through leakscan's
library with every engine, and prints per kind of token: how many were found at the default
confidence (medium and above) and at low, whether each hit has the right layer and status
(every other true positive is deleted by a later layer), which engines found them, and how
many look-alike files were flagged. Nothing is printed in clear but rule ids and counts.

Usage: python bench/labelled.py [--seed N] [--per-kind N] [--workdir bench/out] [--json FILE]

Exit status: 0 when recall at the default is at least --min-recall (0.97) with every hit
placed right and no look-alike file flagged at the default; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from imagebuilder import write_oci_layout  # noqa: E402
from tokencorpus import Row, build, image_of, score  # noqa: E402

from leakscan.scan import ScanOptions, scan  # noqa: E402


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:5.1f}%" if b else "   - "


def print_table(rows: list[Row], notes: list[str], providers: int) -> dict[str, float]:
    """Print the table and totals; return the totals."""
    head = (
        f"{'provider':<16} {'kind':<28} {'TP':>3} {'med+':>4} {'low':>4} {'placed':>6}"
        f"  {'LA':>3} {'flag':>4}  engines (at medium+)"
    )
    print(head)
    print("-" * len(head))
    for r in sorted(rows, key=lambda r: (r.provider.lower(), r.kind)):
        engines = ",".join(f"{e}:{n}" for e, n in sorted(r.engines.items()))
        print(
            f"{r.provider[:16]:<16} {r.kind[:28]:<28} {r.positives:>3} {r.found_default:>4} "
            f"{r.found_low:>4} {r.placed_right:>6}  {r.lookalikes:>3} {r.flagged:>4}  {engines}"
        )
    tp = sum(r.positives for r in rows)
    med = sum(r.found_default for r in rows)
    low = sum(r.found_low for r in rows)
    placed = sum(r.placed_right for r in rows)
    la = sum(r.lookalikes for r in rows)
    flagged = sum(r.flagged for r in rows)
    kinds = sum(1 for r in rows if r.positives)
    engines: Counter[str] = Counter()
    only: Counter[str] = Counter()
    for r in rows:
        engines.update(r.engines)
        only.update(r.only)
    print()
    print(f"providers {providers}, kinds {kinds}, true positives {tp}, look-alike files {la}")
    print(
        f"recall at medium+ {_pct(med, tp)} ({med}/{tp}); at low {_pct(low, tp)} ({low}/{tp}); "
        f"layer and status right on {placed}/{med} hits"
    )
    print(f"look-alike files flagged at medium+: {flagged}/{la}")
    print(
        "engines on hits at medium+ (found by / found by it alone): "
        + ", ".join(f"{e} {n}/{only[e]}" for e, n in sorted(engines.items()))
    )
    for note in notes:
        print("  " + note)
    return {"recall_default": med / tp, "recall_low": low / tp, "placed": placed,
            "hits": med, "lookalikes": la, "flagged": flagged, "positives": tp}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="a fixed corpus (default: fresh)")
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--workdir", default=str(Path(__file__).parent / "out"))
    ap.add_argument("--json", help="write the totals as JSON here")
    ap.add_argument("--min-recall", type=float, default=0.97)
    args = ap.parse_args(argv)
    corpus = build(args.seed, args.per_kind)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        ref = f"oci:{write_oci_layout(Path(tmp) / 'labelled', image_of(corpus))}"
        started = time.perf_counter()
        report = scan(ref, ScanOptions(min_confidence="low", show_secrets=True, workers=1))
        took = time.perf_counter() - started
    if any(image.errors for image in report.images) or report.errors:
        print("scan errors:", report.errors, [i.errors for i in report.images], file=sys.stderr)
        return 1
    rows, notes = score(corpus, report)
    totals = print_table(rows, notes, len(corpus.providers))
    print(f"scan: {took:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(totals, indent=2) + "\n")
    ok = (
        totals["recall_default"] >= args.min_recall
        and totals["placed"] == totals["hits"]
        and totals["flagged"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
