#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then runs every test.
# Tests that need /dev/kvm skip without it, unless KVMSCOPE_REQUIRE_KVM=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v gcc >/dev/null || need+=(gcc)
command -v ld >/dev/null || need+=(binutils)
command -v tmux >/dev/null || need+=(tmux)
command -v gdb >/dev/null || need+=(gdb)
# The network tests: namespaces and TAPs (ip), a peer that pings, an independent pcap reader.
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/run.sh: installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "tests/run.sh: please install ${need[*]}" >&2
        exit 1
    fi
fi

# DuckDB's Python package reads what the Parquet export writes, as an independent reader.
if ! python3 -c 'import duckdb' 2>/dev/null; then
    echo "tests/run.sh: installing duckdb (pip)"
    python3 -m pip install -q --disable-pip-version-check duckdb || echo "tests/run.sh: could not install duckdb" >&2
fi

# Every test binary runs even when one fails, so a run shows all that is wrong at once.
cargo test --locked --no-fail-fast "$@"
