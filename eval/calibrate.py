"""Pick the embedded backend's relevance threshold on held-out BFCL cases (never the ones the evaluation reports).

    python -m eval.run_eval --offset 40 --n 30 --threshold=-1000 --categories simple_python,multiple,live_simple \
        --out heldout.json
    python -m eval.calibrate heldout.json

The first run says, per case, whether the call path gets it right when it is always taken. This script scores each
case's relevance (how much its best function makes the user's message expected), adds the irrelevance cases of the
same range, and shows the accuracy every threshold would give: below the threshold the reply is text, which is right
exactly for the irrelevance cases.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

from backend.models.embedded import EmbeddedBackend
from eval.bfcl import load_cases


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if len(argv) != 1:
        raise SystemExit(__doc__)
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    settings = report["settings"]
    (system,) = [body for name, body in report["systems"].items() if name.startswith("callcard-")]
    right = {r["id"]: r["outcome"] == "ok" for r in system["results"]}
    backend = EmbeddedBackend(relevance_threshold=None)
    rows: list[tuple[str, float, bool]] = []
    for category in [*(c for c in settings["categories"] if c != "irrelevance"), "irrelevance"]:
        for case in load_cases(category, settings["offset"] + settings["n"])[settings["offset"] :]:
            score = max(backend.relevance(case.messages[-1].text, case.functions).values())
            # An irrelevance case is right on the text path; any other case is right if its call was.
            rows.append((category, score, right.get(case.id, False)))
    categories = list(dict.fromkeys(r[0] for r in rows))
    lines = ["threshold " + " ".join(f"{c:>14}" for c in categories) + "      worst"]
    for threshold in [x / 2 for x in range(-4, 21)]:
        accuracy: dict[str, list[bool]] = defaultdict(list)
        for category, score, call_right in rows:
            relevant = category != "irrelevance"
            accuracy[category].append(call_right if score >= threshold else not relevant)
        cells = [100 * sum(accuracy[c]) / len(accuracy[c]) for c in categories]
        lines.append(f"{threshold:9.1f} " + " ".join(f"{v:13.1f}%" for v in cells) + f" {min(cells):9.1f}%")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
