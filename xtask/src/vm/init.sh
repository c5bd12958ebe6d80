#!/bin/sh
# /init of the hwbp test VM (written into the initramfs by `cargo xtask vm`).
# Mounts what hwbp-trace needs, runs the command in /etc/hwbp/command on the
# console, sends the files it left in /out to the host over the second serial
# port, reports the exit status on the console and powers off.
export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/pts /dev/shm /out /tmp /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
ip link set lo up 2>/dev/null
hostname hwbp-vm
echo "init: $(uname -r) up, running the command"

if [ -e /etc/hwbp/interactive ]; then
    # The host terminal is passed through: cttyhack makes the serial console
    # the command's controlling terminal, so that Ctrl-C reaches it.
    setsid cttyhack sh /etc/hwbp/command
    status=$?
else
    # The host reads the console from a pipe or a file: the command must not
    # see a terminal either (no dashboard drawn into a log), so its output
    # goes through a pipe, and its stdin is empty.
    { sh /etc/hwbp/command < /dev/null 2>&1; echo $? > /tmp/hwbp-status; } | cat
    status=$(cat /tmp/hwbp-status)
fi

# Each file under /out as base64 between marker lines. Closing the tty waits
# until its output has been sent (closing_wait), so everything is on the host
# before the sentinel line below is printed.
{
    cd /out && find . -type f | sort | while read -r file; do
        echo "hwbp-out-file ${file#./}"
        base64 "$file"
        echo "hwbp-out-end"
    done
    echo "hwbp-out-done"
} > "$(cat /etc/hwbp/transfer 2>/dev/null || echo /dev/ttyS1)"

echo "init: exit=$status"
sync
poweroff -f
