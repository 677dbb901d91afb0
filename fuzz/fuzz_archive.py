"""Fuzz the image archive reader: bytes -> a tar on disk -> ``scan`` of it as a plain path
(layout sniffed), as ``docker-archive:`` and as ``oci-archive:``, with the real engines
(kingfisher and the credential-file readers), then the JSON report.

``scan`` reports problems in the report; a :class:`LeakscanError` escaping it is tolerated
(expected errors are fine), any other exception is a crash.

    python fuzz/fuzz_archive.py -timeout=10 -rss_limit_mb=512 -dict=fuzz/archive.dict \\
        fuzz/work/archive fuzz/corpus/archive
"""

from __future__ import annotations

import json

from common import fuzz_imports, main, work_dir

with fuzz_imports():
    from leakscan.detectors import DetectorConfig, build_detectors
    from leakscan.errors import LeakscanError
    from leakscan.report.json import report_dict
    from leakscan.scan import ScanOptions, scan

ENGINES = build_detectors(DetectorConfig(detect_secrets=False))
OPTIONS = ScanOptions(workers=1)
IMAGE = work_dir("archive") / "image.tar"


def test_one_input(data: bytes) -> None:
    IMAGE.write_bytes(data)
    for ref in (str(IMAGE), f"docker-archive:{IMAGE}", f"oci-archive:{IMAGE}"):
        try:
            report = scan(ref, OPTIONS, detectors=ENGINES)
        except LeakscanError:
            continue  # expected errors are fine (scan normally reports them instead)
        json.dumps(report_dict(report))


if __name__ == "__main__":
    main(test_one_input)
