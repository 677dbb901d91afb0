"""What reading attestations costs: the same small image scanned with no attestation, with
a BuildKit-shaped mode=max SLSA v0.2 provenance (a few KiB), and with a large one (STEPS
build steps in its LLB definition, as a long multi-stage build writes), each timed whole
(process start to exit) by farm-bench against the image without. Prints farm-bench's
figures; quote the medians.

    python bench/attestations.py [--steps 400] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from imagebuilder import Image, Index, Layer, write_oci_layout  # noqa: E402
from provenancekit import predicate_v02  # noqa: E402


def _image(pred: dict[str, object] | None) -> Index:
    layer = Layer(created_by="RUN /bin/sh -c npm ci")
    for n in range(200):
        layer.file(f"app/node_modules/pkg{n}/index.js", f"module.exports = {n};\n" * 20)
    return Index([Image(layers=[layer], provenance=pred)], attestations=pred is not None)


def _big(steps: int) -> dict[str, object]:
    pred = predicate_v02(args={"NODE_ENV": "production"})
    llb = pred["buildConfig"]["llbDefinition"]  # type: ignore[index]
    template = llb[1]
    for n in range(steps):
        step = json.loads(json.dumps(template))
        step["id"] = f"step{n + 2}"
        step["op"]["Op"]["exec"]["meta"]["args"][-1] = f"npm run build --workspace pkg{n}"
        llb.append(step)
    return pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=HERE / "out" / "attestations")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    layouts = {
        "none": _image(None),
        "mode-max": _image(predicate_v02(args={"NODE_ENV": "production"})),
        f"mode-max-{args.steps}-steps": _image(_big(args.steps)),
    }
    refs = {}
    for name, root in layouts.items():
        path = write_oci_layout(args.workdir / name, root, tag="latest")
        blobs = (path / "blobs" / "sha256").iterdir()
        statement = sum(p.stat().st_size for p in blobs if b'"predicateType"' in p.read_bytes())
        refs[name] = f"oci:{path}:latest"
        print(f"{name}: {path} (statement {statement} bytes)", flush=True)
    scan = [sys.executable, "-m", "leakscan", "--no-cache", "--format", "json", "--workers", "1"]
    for name in list(refs)[1:]:
        print(f"\n== {name} (A) vs none (B)", flush=True)
        baseline = " ".join([*scan, refs["none"]])
        subprocess.run(
            ["farm-bench", "-n", str(args.runs), "--timeout", "600", "--vs", baseline, "--",
             *scan, refs[name]],
            check=False,
        )  # fmt: skip


if __name__ == "__main__":
    main()
