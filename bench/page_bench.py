"""What one refresh of UTE's web page costs `ute dashboard` while a long film is encoded (an open
page asks once a second).

    python bench/page_bench.py [--chunks 719] [--looks 40]

The film is set up as in poll_bench.py (719 chunks: half finished, two running, the rest
queued) with a segment recorded for each finished chunk and an hour of swarm fps buckets.
Printed: the milliseconds of one /api/state document (snapshot, the film's chunk map, the fps
history) against the baseline of `ute status --json`'s snapshot alone, measured in the same run,
and what each costs of one core at one request a second.
"""

from __future__ import annotations

import json
import time

from poll_bench import film_arguments, midway_in_private_redis, print_costs, timed

from ute import pagedata, snapshot, state

REQUESTS_PER_SECOND = 1  # the page's poll


def main() -> None:
    args = film_arguments(__doc__ or "")
    with midway_in_private_redis(args.chunks) as (connection, film):
        state.save_file_record(connection, "0123456789abcdef", source="/videos/film.mkv", state="encoding",
                               queue=state.QUEUE_LOW, work_id=film.work_id,
                               chunk_frames=[chunk.frames for chunk in film.chunks])  # fmt: skip
        for index in range(args.chunks // 2):
            state.record_segment(connection, film.work_id, index, {"bytes": 5_000_000, "worker": "w1"})
        now = time.time()
        for bucket in range(0, state.SWARM_HISTORY_SECONDS, state.SWARM_BUCKET_SECONDS):
            state.count_encoded_frames(connection, 900, now=now - bucket)

        document = pagedata.page_state(connection, None)
        size = len(json.dumps(document))
        page = timed(lambda: json.dumps(pagedata.page_state(connection, None)), args.looks)
        status = timed(lambda: json.dumps(snapshot.snapshot(connection)), args.looks)
        print(f"{args.chunks} chunks: {args.chunks // 2} finished, 2 running, the rest queued; "
              f"median of {args.looks} requests; the page's document is {size / 1000:.0f} kB")
        print_costs([("ute status --json (baseline)", status), ("the page's /api/state", page)],
                    REQUESTS_PER_SECOND, 32)
        print(f"page / status: {page / status:.2f}x")


if __name__ == "__main__":
    main()
