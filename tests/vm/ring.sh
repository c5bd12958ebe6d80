#!/bin/sh
# The shared ring buffer with CPUs hitting at once, in the kernel's own
# context: run inside the VM by hand (BENCHMARKS.md, "One ring buffer for
# every CPU"), as `cargo xtask vm --mttcg [--cpus N] -- /vm/ring.sh CALLS`.
#
# An execute breakpoint on __x64_sys_getpgid traps in the debug exception,
# which the kernel runs as an NMI: there the ring buffer only tries its lock
# and hwbp-trace's program tries again while the buffer has room. For
# `--records all` and `--records none`, first one fx_kernel on CPU 0, then
# one pinned to every CPU at once, CALLS calls in all; with
# kernel.bpf_stats_enabled on, the program's own time per run (bpftool),
# and the trace's summary (lost, counted).
#
# Writes /out/ring.txt, a line per run:
# `MODE CPUS RUN_TIME_NS RUN_CNT COUNTED LOST`.

. "${0%/*}/lib.sh"
cd /out || exit 1
calls=${1:-20000}
cpus=$(grep -c '^processor' /proc/cpuinfo)
echo 1 > /proc/sys/kernel/bpf_stats_enabled
: > ring.txt

for round in 1 2 3; do
    for mode in all none; do
        for hitting in 1 "$cpus"; do
            hwbp-trace -q --no-tui --comm fx_kernel --records "$mode" \
                -o ring.jsonl __x64_sys_getpgid 2> hwbp.err &
            tracer=$!
            if ! armed "$tracer" hwbp.err; then
                echo "ring: hwbp-trace never armed:"
                cat hwbp.err
                exit 1
            fi
            pids=""
            cpu=0
            while [ "$cpu" -lt "$hitting" ]; do
                taskset -c "$cpu" fx_kernel getpgid $((calls / hitting)) > /dev/null &
                pids="$pids $!"
                cpu=$((cpu + 1))
            done
            wait $pids
            stats=$(bpftool prog show | sed -n '/perf_event/s/.* run_time_ns \([0-9]*\) run_cnt \([0-9]*\).*/\1 \2/p' | head -n 1)
            kill -TERM "$tracer"
            wait "$tracer"
            summary=$(tail -n 1 ring.jsonl)
            counted=$(echo "$summary" | sed -n 's/.*"counted":\([0-9]*\).*/\1/p')
            lost=$(echo "$summary" | sed -n 's/.*"lost":\([0-9]*\).*/\1/p')
            echo "$mode $hitting ${stats:-none none} ${counted:--} ${lost:--}" >> ring.txt
            rm -f ring.jsonl
        done
    done
done
cat ring.txt
echo "ring: done"
