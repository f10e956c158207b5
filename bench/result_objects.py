"""Build time of each result object kind, and dciodvfy's verdict on it (I/O: runs dciodvfy).

    python -m bench.result_objects [--repeat 5]

Cases: a chest radiograph at the demo size (320 x 256) and at a clinical size (2048 x 2048),
and a 3-slice head CT. Prints the median build time per kind (after one warm-up build, so
imports and font loading are not counted), the encoded size, and dciodvfy's error and
warning counts. Reference: building the SR alone, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from integrations.dicom.gsps import build_presentation_states
from integrations.dicom.parametric_map import build_parametric_maps
from integrations.dicom.result_common import encode_dataset
from integrations.dicom.secondary_capture import build_secondary_captures
from integrations.dicom.segmentation import build_segmentations
from integrations.dicom.sr import build_measurement_report
from integrations.settings import ResultsSettings
from tests.dciodvfy import verify
from tests.unit.results import synthetic

PROFILE = ResultsSettings(
    carriers=["sr", "gsps", "secondary_capture", "segmentation", "parametric_map"]
)


def cases():
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    small, _ = synthetic.chest_radiograph(lesion=lesion)
    yield "DX 320x256", [small], synthetic.chest_analysis(small, lesion)
    big_lesion = synthetic.Lesion((1300.0, 600.0), (90.0, 70.0))
    big, _ = synthetic.chest_radiograph(lesion=big_lesion, shape=(2048, 2048))
    yield "DX 2048x2048", [big], synthetic.chest_analysis(big, big_lesion)
    ct_lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    images, _ = synthetic.ct_series(lesion=ct_lesion)
    yield "CT 3x96x112", images, synthetic.head_ct_analysis(images, ct_lesion, diameter_mm=20.0)


def builders():
    yield "sr", lambda a, s: [build_measurement_report(a, s, profile=PROFILE)]
    yield "gsps", lambda a, s: build_presentation_states(a, s, profile=PROFILE)
    yield "secondary_capture", lambda a, s: build_secondary_captures(a, s, profile=PROFILE)
    yield "segmentation", lambda a, s: build_segmentations(a, s, profile=PROFILE)[0]
    yield "parametric_map", lambda a, s: build_parametric_maps(a, s, profile=PROFILE)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'case':<14} {'kind':<18} {'median ms':>10} {'x SR':>6} {'bytes':>10}  dciodvfy")
    for case, sources, analysis in cases():
        reference = None
        for kind, build in builders():
            objects = build(analysis, sources)  # warm-up
            if not objects:
                print(f"{case:<14} {kind:<18} {'skipped':>10}")
                continue
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                objects = build(analysis, sources)
                times.append(time.perf_counter() - start)
            median = statistics.median(times) * 1000
            reference = reference or median
            data = [encode_dataset(item) for item in objects]
            verdicts = [verify(item) for item in data]
            errors = sum(len(v.errors) for v in verdicts)
            warnings = sum(len(v.warnings) for v in verdicts)
            print(
                f"{case:<14} {kind:<18} {median:>10.1f} {median / reference:>6.1f} "
                f"{sum(map(len, data)):>10}  {errors} errors, {warnings} warnings"
            )


if __name__ == "__main__":
    main()
