#!/usr/bin/env bash
# Assertion density: assertion sites (assert!, assert_eq!, assert_ne!, debug_assert*!) per
# function (`fn` items), in production code only. Not counted:
# - comments and doc comments (doc examples are tests);
# - bodiless `fn` declarations ending in `;` (a trait's required methods: no body to assert in);
# - items under `#[cfg(test)]` (a test module, or a single test-only item);
# - *tests.rs files, testkit/ (test helpers) and wal's conformance.rs (a test suite for
#   `raft::Storage` implementations: its assertions are the checks of that suite).
#
#   scripts/assertion-density.sh              every crate under crates/
#   scripts/assertion-density.sh raft wal     those crates, and their total
#   scripts/assertion-density.sh --files raft per file too
set -euo pipefail
cd "$(dirname "$0")/.."
show_files=0
if [[ "${1:-}" == "--files" ]]; then
    show_files=1
    shift
fi
crates=("$@")
if [[ ${#crates[@]} -eq 0 ]]; then
    for directory in crates/*/; do
        crates+=("$(basename "$directory")")
    done
fi
# Prints "<asserts> <functions>" for the production part of one file.
count_file() {
    awk '
        # Line comments and doc comments are dropped (strings holding "//" are rare here).
        { sub(/\/\/.*/, "") }
        # An item under #[cfg(test)] is skipped up to the end of its braces (or its `;`).
        skipping == 0 && /^[[:space:]]*#\[cfg\(test\)\]/ { skipping = 1; depth = 0; opened = 0; next }
        skipping == 1 {
            line = $0
            opens = gsub(/\{/, "{", line)
            closes = gsub(/\}/, "}", line)
            depth += opens - closes
            if (opens > 0) opened = 1
            if ((opened && depth <= 0) || (!opened && line ~ /;[[:space:]]*$/)) skipping = 0
            next
        }
        # A required trait method (`fn name(...) -> T;` on one line) declares, it has no body.
        /(^|[^[:alnum:]_])fn [[:alnum:]_]+.*;[[:space:]]*$/ && !/\{/ { next }
        { functions += gsub(/(^|[^[:alnum:]_])fn [[:alnum:]_]+/, "&") }
        { asserts += gsub(/(^|[^[:alnum:]_])(debug_)?assert(_eq|_ne)?!/, "&") }
        END { printf "%d %d\n", asserts, functions }
    ' "$1"
}
density() {
    awk -v a="$1" -v f="$2" 'BEGIN { if (f == 0) print "-"; else printf "%.2f", a / f }'
}
printf '%-12s %8s %10s %8s\n' crate asserts functions density
all_asserts=0
all_functions=0
for crate in "${crates[@]}"; do
    total_asserts=0
    total_functions=0
    while IFS= read -r file; do
        read -r asserts functions < <(count_file "$file")
        total_asserts=$((total_asserts + asserts))
        total_functions=$((total_functions + functions))
        if [[ $show_files -eq 1 && $functions -gt 0 ]]; then
            printf '  %-40s %5d %5d %6s\n' "${file#crates/}" "$asserts" "$functions" "$(density "$asserts" "$functions")"
        fi
    done < <(find "crates/$crate/src" -name '*.rs' ! -name '*tests.rs' ! -path '*/testkit/*' \
        ! -path 'crates/wal/src/conformance.rs' | sort)
    printf '%-12s %8d %10d %8s\n' "$crate" "$total_asserts" "$total_functions" "$(density "$total_asserts" "$total_functions")"
    all_asserts=$((all_asserts + total_asserts))
    all_functions=$((all_functions + total_functions))
done
if [[ ${#crates[@]} -gt 1 ]]; then
    printf '%-12s %8d %10d %8s\n' total "$all_asserts" "$all_functions" "$(density "$all_asserts" "$all_functions")"
fi
