"""Run one real edulake flow in this process, for the concurrency tests.

python -m tests.concurrency.runner clever LAKE NP SRC [FROM TO]
python -m tests.concurrency.runner forget LAKE NP IDS_FILE
python -m tests.concurrency.runner rotate LAKE NP
python -m tests.concurrency.runner libinsight LAKE NP BASE_URL FROM TO

The real Prefect flows (tasks, retries, the lake lease), on the Prefect server named by
PREFECT_API_URL (or a temporary one). The key comes from EDULAKE_HMAC_KEY, set by the test.
Prints the flow's summary as JSON; exit 0 when the flow completed, 1 when it failed.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import traceback


def main(argv: list[str]) -> int:
    kind, lake, np_root, *rest = argv
    where = {"lake_root": lake, "np_root": np_root}
    try:
        if kind == "clever":
            from flows.clever_participation import clever_participation

            src, *dates = rest
            days = [dt.date.fromisoformat(d) for d in dates] or [None, None]
            out = clever_participation(
                source="folder",
                source_path=src,
                report_from=days[0],
                report_to=days[1],
                max_quarantine_share=0.5,
                **where,
            )
        elif kind == "forget":
            from flows.forget import forget_flow

            out = forget_flow(ids_file=rest[0], **where)
        elif kind == "rotate":
            from flows.clever_maintenance import clever_rotate_key

            out = clever_rotate_key(**where)
        elif kind == "libinsight":
            from edulake.demo.libinsight_server import DEMO_CLIENT_ID
            from flows.libinsight_dataset import libinsight_dataset

            base_url, start, end = rest
            out = libinsight_dataset(
                base_url=base_url,
                dataset_id=12345,
                client_id=DEMO_CLIENT_ID,
                client_secret_block=None,
                from_date=dt.date.fromisoformat(start),
                to_date=dt.date.fromisoformat(end),
                concurrency=4,
                **where,
            )
        else:
            raise SystemExit(f"unknown kind {kind}")
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
