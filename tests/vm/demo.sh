#!/bin/sh
# The demo, run inside the VM by `cargo xtask demo` (and by the kernel tests
# of `cargo xtask test`, which check it): hwbp-trace system-wide on a kernel
# function (vfs_read, execute breakpoint) and a kernel variable (pid_max,
# write watchpoint) while a small scripted workload runs, ended with
# SIGTERM once the workload is done. Everything lands in OUT (default /out):
# trace.jsonl, hwbp-trace.stderr, and the fixtures' own account of what they
# did (reads.out, pidmax.out), which the host compares with the trace.

. "${0%/*}/lib.sh"
out=${1:-/out}
mkdir -p "$out" || exit 1
fifo=/tmp/demo-stderr.$$
mkfifo "$fifo" || exit 1
tee "$out/hwbp-trace.stderr" < "$fifo" >&2 &
# -q: the host prints the interesting hits afterwards, with their stacks.
echo "demo: hwbp-trace -q --no-tui -o $out/trace.jsonl vfs_read pid_max"
hwbp-trace -q --no-tui -o "$out/trace.jsonl" vfs_read pid_max 2> "$fifo" &
tracer=$!
if ! armed "$tracer" "$out/hwbp-trace.stderr"; then
    echo "demo: hwbp-trace did not start"
    kill -TERM "$tracer" 2> /dev/null
    wait "$tracer"
    exit 1
fi

# (busybox cat copies with sendfile, which does not go through vfs_read: wc
# and the fixture read with read(2).)
echo "demo: workload: wc reads two files; fx_kernel, renamed fx_reads, reads /proc/version 5 times; fx_kernel writes pid_max 3 times"
# Outputs to files, shown once the trace ends: on the console they would
# make init's cat read (more vfs_read hits, at the same time as the workload's).
wc -c /proc/version /etc/hwbp/command > "$out/wc.out"
fx_kernel read-as fx_reads /proc/version 5 > "$out/reads.out"
fx_kernel pidmax 3 > "$out/pidmax.out"

echo "demo: workload done, ending the trace (SIGTERM)"
kill -TERM "$tracer"
wait "$tracer"
status=$?
cat "$out/wc.out" "$out/reads.out" "$out/pidmax.out"
echo "demo: hwbp-trace exited $status"
rm -f "$fifo"
exit "$status"
