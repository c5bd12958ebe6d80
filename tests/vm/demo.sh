#!/bin/sh
# The demo, run inside the VM by `cargo xtask demo`: hwbp-trace system-wide
# on a kernel function (vfs_read, execute breakpoint) and a kernel variable
# (pid_max, write watchpoint) while a small scripted workload runs. Its
# output shows on the console; the trace lands in /out/trace.jsonl.

duration=${1:-6}
mkfifo /tmp/stderr
tee /out/hwbp-trace.stderr < /tmp/stderr >&2 &
# -q: the host prints the interesting hits afterwards, with their stacks.
echo "demo: hwbp-trace -q --no-tui -d $duration -o /out/trace.jsonl vfs_read pid_max"
hwbp-trace -q --no-tui -d "$duration" -o /out/trace.jsonl vfs_read pid_max 2> /tmp/stderr &
tracer=$!
tries=0
# `test -s` (a stat, not a read) until the `Tracing` line is there, so that
# the wait itself adds no vfs_read calls.
until [ -s /out/hwbp-trace.stderr ] && grep -q '^Tracing' /out/hwbp-trace.stderr; do
    tries=$((tries + 1))
    if [ "$tries" -gt 1200 ] || ! kill -0 "$tracer" 2> /dev/null; then
        echo "demo: hwbp-trace did not start"
        wait "$tracer"
        exit 1
    fi
    sleep 0.05
done

# (busybox cat copies with sendfile, which does not go through vfs_read: wc
# and the fixture read with read(2).)
echo "demo: workload: wc reads two files, fx_kernel reads pid_max twice, then writes it 3 times"
wc -c /proc/version /etc/hwbp/command
fx_kernel read-pidmax 2
fx_kernel pidmax 3

wait "$tracer"
status=$?
echo "demo: hwbp-trace exited $status"
exit "$status"
