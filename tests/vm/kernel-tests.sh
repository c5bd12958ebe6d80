#!/bin/sh
# Kernel tests, run inside the VM by `cargo xtask test`, which boots each
# kernel twice: `/vm/kernel-tests.sh OFFSET SCENARIOS`, the second time
# with --mttcg. SCENARIOS is shell text: each kernel test of
# xtask/src/kernel_tests/ is one entry holding its scenario (the commands
# it runs here) and its check (run on the host), and the host passes the
# scenarios of that boot's tests.
#
# Each scenario runs hwbp-trace against ground truth made by the fx_kernel
# fixture and leaves in /out: NAME.cmd (the command line), NAME.rc (exit
# status), NAME.stdout, NAME.stderr and, for most, NAME.jsonl. The host
# checks them; this script only runs things and does not stop at a
# failure. /out/facts.env holds what the checks need to know about this
# kernel (addresses, the blacklisted function, ...).

. "${0%/*}/lib.sh"
cd /out || exit 1
echo "# facts about the guest kernel" > facts.env
fact() {
    echo "$1=$2" >> facts.env
    echo "kernel-tests: $1=$2"
}

# run NAME ARGS...: hwbp-trace ARGS in the foreground, everything recorded.
run() {
    name=$1
    shift
    echo "hwbp-trace $*" > "$name.cmd"
    hwbp-trace "$@" > "$name.stdout" 2> "$name.stderr"
    echo $? > "$name.rc"
    echo "kernel-tests: $name: exit $(cat "$name.rc"): hwbp-trace $*"
}

# start NAME ARGS...: hwbp-trace ARGS in the background, returning once it
# has armed its breakpoints (its `Tracing` line) or given up; finish waits.
start() {
    bg_name=$1
    shift
    echo "hwbp-trace $*" > "$bg_name.cmd"
    hwbp-trace "$@" > "$bg_name.stdout" 2> "$bg_name.stderr" &
    bg_pid=$!
    armed "$bg_pid" "$bg_name.stderr" || echo "kernel-tests: $bg_name: hwbp-trace never armed"
}
finish() {
    wait "$bg_pid"
    echo $? > "$bg_name.rc"
    echo "kernel-tests: $bg_name: exit $(cat "$bg_name.rc"): $(cat "$bg_name.cmd")"
}

addr_of() {
    awk -v name="$1" '$3 == name && NF == 3 { print $1; exit }' /proc/kallsyms
}

fact release "$(uname -r)"
fact cpus "$(nproc)"
fact pid_max_addr "$(addr_of pid_max)"
fact getpgid_addr "$(addr_of __x64_sys_getpgid)"
# An instruction boundary inside __x64_sys_getpgid, for SYMBOL+OFFSET: the
# host reads it from the kernel's config (past `call __fentry__`, and past
# endbr64 with IBT) and passes it as $1.
exec_offset=${1:-0x5}
fact exec_offset "$exec_offset"
# The scenarios to run (see the end).
scenarios=${2:?usage: kernel-tests.sh EXEC_OFFSET SCENARIOS}
# A kprobe-blacklisted function: exc_debug (the #DB handler itself) if
# listed, else the first entry.
blacklist=/sys/kernel/debug/kprobes/blacklist
blacklisted=$(awk '$2 == "exc_debug" { print $2; exit }' "$blacklist")
[ -n "$blacklisted" ] || blacklisted=$(awk 'NR == 1 { print $2 }' "$blacklist")
fact blacklisted "$blacklisted"

# The scenarios, one after the other, as one shell script. Each one sits
# beside its check in xtask/src/kernel_tests/, which composes them for
# each boot; they use the helpers and variables above.
eval "$scenarios"

echo "kernel-tests: done"
