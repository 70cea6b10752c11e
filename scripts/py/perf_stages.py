#!/usr/bin/env python3
"""CPU samples of a `perf record -g` run by stage: each sample goes to the innermost frame of its call stack that
names one of the stages (a substring match on the demangled symbol), then by leaf symbol within the stage.

    perf record -F 1999 -g -o P.data .build/release/fpnstream process CLIP --model M --temporal delta ...
    perf script -i P.data | swift demangle --simplified | python3 scripts/py/perf_stages.py [STAGES]

STAGES: `|`-separated names; the default is the R-CNN detector's parts (backbone blocks, FPN, RPN, RoI pooling,
box and mask heads, semantic head, panoptic merge). Samples outside every stage count as `other`. Leaves under
0.3% of all samples are not listed. A profile, not a timing: compare shares (or counts of runs of equal length) of
runs made back to back.
"""
import collections
import re
import sys

DEFAULT = ("poolingLevels|RoIAlign|maskProbabilities|boxOutputs|SemanticFPNHead|RegionProposalNetwork|"
           "FeaturePyramidNetwork|ResidualBlock|ResNetFPNBackbone|PanopticMerge|GeneralizedRCNN")


def main():
    stages = (sys.argv[1] if len(sys.argv) > 1 else DEFAULT).split("|")
    counts = collections.Counter()
    stack = []

    def flush():
        if not stack:
            return
        stage = next((s for frame in stack for s in stages if s in frame), "other")
        counts[(stage, stack[0])] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            stack = []
        elif line[0] in " \t":
            parts = line.strip().split(" ", 1)
            if len(parts) == 2:
                stack.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1].rsplit(" (", 1)[0])[:90])
    flush()
    total = sum(counts.values())
    if total == 0:
        sys.exit("perf_stages: no samples with call stacks on stdin (record with -g)")
    by_stage = collections.Counter()
    for (stage, _), n in counts.items():
        by_stage[stage] += n
    print(f"samples: {total}")
    for stage, n in by_stage.most_common():
        print(f"{n:7d} {100 * n / total:5.1f}%  {stage}")
        for (s, leaf), m in counts.most_common():
            if s == stage and m >= 0.003 * total:
                print(f"        {m:7d} {100 * m / total:5.1f}%  {leaf}")


if __name__ == "__main__":
    main()
