"""Ablation of the default `prototype` method (as GLS-Age's Table 3): each part off in turn.

    python benchmarks/prototype_ablation.py --label "v2" [--set KEY=VALUE ...] [--limit 60] [--lag-limit 80]

Each call measures one variant on the same test faces (seeded sample) and the same LAG people, and
adds its row to benchmarks/results/prototype_ablation.json; the markdown table
benchmarks/results/prototype_ablation.md is rewritten from all rows. The "v1" row is the previous
release's code and shipped prototypes, measured by running this same script with that checkout's
``src`` on PYTHONPATH (only APIs both versions share are used here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(label: str, options: dict, data: Path, limit: int, lag_root: Path, lag_limit: int) -> dict:
    import torch

    try:
        from faceage.bench.aging import run_aging_benchmark
        from faceage.bench.lag import run_lag
    except ImportError:  # the v1 checkout: the benchmark lived with the evaluators
        from faceage.eval.aging_bench import run_aging_benchmark  # type: ignore[no-redef]
        from faceage.eval.lag import run_lag  # type: ignore[no-redef]
    from faceage.methods.registry import load_method

    torch.set_num_threads(2)
    started = time.monotonic()
    method = load_method("prototype", device="cpu", **options)
    bench = run_aging_benchmark(method, data, limit=limit, realism=False, gray_faces=0, log=print)
    lag = run_lag(method, lag_root, lag_limit, log=print)
    return {
        "label": label,
        "options": options,
        "code": os.environ.get("PYTHONPATH", "this checkout"),
        "faces": bench["faces"],
        "ages": {k: [round(g["age_mean"], 2), round(g["age_std"], 2)] for k, g in bench["groups"].items()},
        "identity": {k: round(g["identity_rate"], 1) for k, g in bench["groups"].items()},
        "edit_size": {k: g.get("edit_size") for k, g in bench["groups"].items()},
        "lag": {k: lag[k] for k in ("young_to_old", "old_to_young")},
        "lag_people": lag["aligned"],
        "minutes": round((time.monotonic() - started) / 60, 1),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "# Ablation of the `prototype` method",
        "",
        "Each row: one variant on the same test faces (independent age estimator, mean per target group; "
        "SFace identity verified) and the same LAG people (mean SFace gain towards the REAL other-age photo, "
        "share moved closer beyond the null-edit margin, independent age error; children = people whose young "
        "photo reads <= 12). Command per row: `python benchmarks/prototype_ablation.py --label LABEL --set ...`; "
        "v1 = the previous release (its code and prototypes). Not in the table: sub-cluster prototypes "
        "(finer averages chosen per face), which are not built yet, so they cannot be switched off.",
        "",
        "| variant | faces / LAG people | age at 5 / 15 / 25 / 35 / 55 | identity % | landmark shift at 5 / 55 | "
        "LAG young->old gain, closer, age error | children young->old closer | LAG old->young gain, closer, age error "
        "| children old->young closer | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ages = " / ".join(f"{a[0]:.1f}" for a in r["ages"].values())
        ident = " / ".join(f"{v:.0f}" for v in r["identity"].values())
        sizes = [r["edit_size"].get(k) for k in ("0", "50")]
        shift = " / ".join("-" if s is None else f"{s['shape_share'] * 100:.1f} %" for s in sizes)
        cells = []
        for key in ("young_to_old", "old_to_young"):
            d = r["lag"][key]
            kids = d.get("children") or {}
            cells.append(
                f"{d['gain_mean']:+.3f}, {d['share_closer']:.0f} %, {d['age_error_unedited']:.1f} -> "
                f"{d['age_error_edited']:.1f}"
            )
            cells.append("-" if not kids.get("people") else f"{kids['share_closer']:.0f} % of {kids['people']}")
        lines.append(
            f"| {r['label']} | {r['faces']} / {r['lag_people']} | {ages} | {ident} | {shift} | "
            + " | ".join(cells)
            + f" | {r['minutes']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", type=Path, default=Path("data/faces256"))
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--lag", type=Path, default=Path("../shared/datasets/lag"))
    parser.add_argument("--lag-limit", type=int, default=80)
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.sets)
    row = measure(args.label, options, args.data, args.limit, args.lag, args.lag_limit)
    path = RESULTS / "prototype_ablation.json"
    rows = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    rows = [r for r in rows if r["label"] != args.label] + [row]
    path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    (RESULTS / "prototype_ablation.md").write_text(table(rows), encoding="utf-8")
    print(f"wrote {path} and prototype_ablation.md ({len(rows)} rows)", file=sys.stderr)


if __name__ == "__main__":
    main()
