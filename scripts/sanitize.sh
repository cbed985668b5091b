#!/usr/bin/env bash
# Runs the runtime and zoo test suites under AddressSanitizer and ThreadSanitizer, each in its own
# build directory (.build-address, .build-thread), and prints one summary line per sanitizer.
#   SANITIZERS="address thread"   which to run (default both)
#   FILTER="RuntimeTests|ZooTests" which suites (a swift test --filter pattern)
# Debug builds (sanitizers need them to report lines); expect 10-30 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
FILTER="${FILTER:-RuntimeTests|ZooTests}"
status=0
for sanitizer in ${SANITIZERS:-address thread}; do
    log=".build-$sanitizer/sanitize.log"; mkdir -p ".build-$sanitizer"
    # The malloc interposer that counts allocations cannot sit beside a sanitizer's own malloc:
    # the steady-state allocation tests skip themselves when KILN_SANITIZER is set.
    # Leaks the toolchain's libraries keep until exit are suppressed (scripts/lsan.supp); a leak
    # in Kiln's code still fails.
    LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=1" \
    KILN_SANITIZER=$sanitizer swift test --sanitize="$sanitizer" --build-path ".build-$sanitizer" --filter "$FILTER" > "$log" 2>&1
    code=$?
    reports=$(grep -c -E "^(==[0-9]+==ERROR|WARNING: ThreadSanitizer|SUMMARY: (Address|Thread)Sanitizer)" "$log" || true)
    echo "$sanitizer: exit $code, $reports sanitizer reports; $(grep -E 'Test run with|Executed .* tests' "$log" | tail -1)"
    if [ "$code" -ne 0 ] || [ "$reports" -ne 0 ]; then status=1; fi
done
exit $status
