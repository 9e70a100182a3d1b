#!/usr/bin/env bash
# Fuzz the pipeline and --set parsers with libFuzzer (Debian's clang, -fsanitize=fuzzer), seeded
# with examples/pipelines/, for a fixed number of runs (FUZZ_RUNS, default 200000). A crash
# leaves its input in $BUILD_DIR/fuzz/ and fails; turn it into a test in tests/unit/.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${BUILD_DIR:-build}/fuzz"
mkdir -p "$out/corpus"
clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Icore -Iplugin_api/include tests/fuzz/fuzz_parsers.cpp core/pipeline.cpp core/filters.cpp -lseccomp -o "$out/fuzz_parsers"
cp examples/pipelines/*.json "$out/corpus/"
cd "$out"
./fuzz_parsers -runs="${FUZZ_RUNS:-200000}" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix=./ corpus/
