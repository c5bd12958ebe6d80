#!/bin/sh
# The kernel-target benchmark, run inside the VM by `cargo xtask bench`
# (as `cargo xtask vm -- /vm/bench.sh RUNS SMALL LARGE` would).
#
# What an execute breakpoint on __x64_sys_getpgid costs the program that
# makes the calls, timed by the fx_kernel fixture's own clock around its
# loop of getpgid(0) calls (start-up is outside it): the calls alone; under
# a counting breakpoint (fx_kernel count-getpgid: the debug exceptions
# alone, the floor); under hwbp-trace without stacks; under hwbp-trace with
# kernel stacks (its default for kernel targets) and a JSONL file. RUNS
# rounds, alternating, of SMALL and LARGE calls each, so that the host can
# take medians and the slope between the two sizes.
#
# Writes /out/bench.txt, a line per run: `VARIANT CALLS NS COUNTED`, where
# COUNTED is the breakpoint's own count (the floor) or the trace's
# kernel_count, and `-` where there is none. Under TCG every time is the
# emulator's: only the ratios between the rows mean anything.
#
# The host boots this guest with a host thread per vCPU (--mttcg), so that
# hwbp-trace's reader on one vCPU does not take the fixture's time on the
# other. Everything here is therefore system-wide: a per-task perf event
# makes the kernel patch a static key, which such a guest may not survive
# (xtask/src/vm/). hwbp-trace keeps the fixture's hits with --comm.

. "${0%/*}/lib.sh"
cd /out || exit 1
runs=${1:-5}
small=${2:-2000}
large=${3:-10000}
addr=$(awk '$3 == "__x64_sys_getpgid" && NF == 3 { print $1; exit }' /proc/kallsyms)
echo "bench: __x64_sys_getpgid at $addr, $runs rounds of $small and $large calls"
: > bench.txt

# record VARIANT CALLS: the fixture's line is in fx.out, a trace maybe in
# trace.jsonl.
record() {
    ns=$(sed -n 's/^getpgid called [0-9]* times in \([0-9]*\) ns.*/\1/p' fx.out)
    counted=$(sed -n 's/.*, counted \([0-9]*\)$/\1/p' fx.out)
    if [ -z "$counted" ] && [ -s trace.jsonl ]; then
        counted=$(tail -n 1 trace.jsonl | sed -n 's/.*"kernel_count":\([0-9]*\).*/\1/p')
    fi
    echo "$1 $2 ${ns:-none} ${counted:--}" >> bench.txt
    rm -f trace.jsonl
}

# traced CALLS ARGS...: hwbp-trace ARGS system-wide in the background;
# once it has armed (its `Tracing` line), the fixture makes CALLS calls;
# then SIGTERM ends the trace.
traced() {
    calls=$1
    shift
    hwbp-trace "$@" 2> hwbp.err &
    tracer=$!
    if ! armed "$tracer" hwbp.err; then
        echo "bench: hwbp-trace never armed:"
        cat hwbp.err
        exit 1
    fi
    fx_kernel getpgid "$calls" > fx.out
    kill -TERM "$tracer"
    wait "$tracer"
}

round=0
while [ "$round" -lt "$runs" ]; do
    for calls in "$small" "$large"; do
        fx_kernel getpgid "$calls" > fx.out
        record alone "$calls"
        fx_kernel count-getpgid "$addr" "$calls" > fx.out
        record floor "$calls"
        traced "$calls" -q --no-tui --comm fx_kernel --stack none \
            -o trace.jsonl __x64_sys_getpgid
        record hwbp-trace-no-stacks "$calls"
        traced "$calls" -q --no-tui --comm fx_kernel -o trace.jsonl __x64_sys_getpgid
        record hwbp-trace-kernel-stacks "$calls"
    done
    round=$((round + 1))
done
cat bench.txt
echo "bench: done"
