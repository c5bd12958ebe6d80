# Shared by the scripts of tests/vm (sourced, not run).

# armed PID FILE: waits until hwbp-trace (PID), whose stderr goes to FILE,
# prints its `Tracing` line, that is, until its breakpoints are armed.
# Fails if it exits first or takes over 60 s. `test -s` (a stat, not a
# read) comes first, so that the wait adds few vfs_read calls to a trace
# of vfs_read (the demo's).
armed() {
    tries=0
    until [ -s "$2" ] && grep -q '^Tracing' "$2"; do
        tries=$((tries + 1))
        if [ "$tries" -gt 1200 ] || ! kill -0 "$1" 2> /dev/null; then
            return 1
        fi
        sleep 0.05
    done
}
