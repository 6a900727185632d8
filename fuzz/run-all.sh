#!/usr/bin/env bash
# Runs every fuzz target listed in fuzz/Cargo.toml for FUZZ_SECONDS (default 20) seconds each.
set -euo pipefail

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Run from the project root, as cargo fuzz expects; --fuzz-dir below names this directory
# explicitly so the run does not depend on how cargo fuzz locates it.
cd "$fuzz_dir/.."

mapfile -t targets < <(
    awk '/^\[\[bin\]\]/ { in_bin = 1; next }
         /^\[/ { in_bin = 0 }
         in_bin && /^name[[:space:]]*=/ { gsub(/.*=[[:space:]]*"|".*/, ""); print }' \
        "$fuzz_dir/Cargo.toml"
)
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "no [[bin]] targets found in $fuzz_dir/Cargo.toml" >&2
    exit 1
fi

# One build of every target first, so a build error is reported as such and each run below
# spends its time fuzzing.
echo "==> building ${#targets[@]} targets"
RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir "$fuzz_dir"

log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT
failed=()
for target in "${targets[@]}"; do
    echo "==> $target (${FUZZ_SECONDS}s)"
    log="$log_dir/$target.log"
    status=0
    RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" \
        -- -max_total_time="$FUZZ_SECONDS" >"$log" 2>&1 || status=$?
    # libFuzzer's closing line, e.g. "Done 1234567 runs in 21 second(s)".
    summary="$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true)"
    if [[ $status -ne 0 ]]; then
        tail -n 40 "$log"
        echo "$target: FAILED (exit $status)${summary:+; $summary}"
        failed+=("$target")
    else
        echo "$target: ${summary:-$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)}"
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${FUZZ_SECONDS}s each without a crash"
