"""Run every benchmark in order and refresh docs/benchmarks.md."""

from __future__ import annotations

import bench_features
import bench_history
import bench_ingest
import bench_models
import bench_segments

if __name__ == "__main__":
    bench_ingest.main()
    bench_features.main()
    bench_models.main()
    bench_segments.main()
    bench_history.main()
