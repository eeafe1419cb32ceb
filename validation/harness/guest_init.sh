#!/bin/busybox sh
# The guest side of a validation case: PID 1 of a busybox initramfs.
#
# It reads one shell command per line from the control port (/dev/ttyS1), runs it, and frames what it prints
# between "@@B <n>" and "@@E <n> <status>" lines on the same port. The host (validation/harness/qemu.py) sends
# the commands; the functions below are what it calls. Everything printed is raw text from /proc and /sys, so
# the recording holds what the kernel said, not our reading of it.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
MEM=/sys/devices/system/memory

# modules the harness put in /modules, in dependency order (modules.order)
if [ -f /modules/order ]; then
	while read -r m; do insmod "/modules/$m" || echo "insmod $m failed" > /dev/ttyS0; done < /modules/order
fi

# One "memoryN <state> <node> <valid_zones...>" line per memory block.
blocks() {
	local d n l s z
	for d in $MEM/memory*; do
		n=
		for l in "$d"/node*; do [ -e "$l" ] && n=${l##*/}; done
		read -r s < "$d/state"
		read -r z < "$d/valid_zones" 2>/dev/null || z=?
		echo "${d##*/} $s ${n:-node?} $z"
	done
}

# Everything a phase records, as sections the host splits on "@@S <name>".
snap() {
	echo "@@S meminfo"; cat /proc/meminfo
	echo "@@S vmstat"; grep -E '^(nr_free_pages|nr_memmap|nr_zone_|nr_slab|nr_page_table|nr_kernel_stack|nr_shmem |nr_swapcached|pswp)' /proc/vmstat
	echo "@@S zoneinfo"; grep -E '^Node|^ +(pages free|spanned|present|managed|start_pfn|count:)' /proc/zoneinfo
	echo "@@S blocks"; blocks
	echo "@@S block_size_bytes"; cat $MEM/block_size_bytes
	echo "@@S auto_online_blocks"; cat $MEM/auto_online_blocks
	echo "@@S uptime"; cat /proc/uptime
}

# wr VALUE FILE...: write VALUE to each file (a separate process each, killed after 120 s: offline_pages()
# retries migration until a fatal signal). Prints "<file> <exit status> <error message>" per file.
wr() {
	local v f e
	v=$1; shift
	for f in "$@"; do
		e=$(timeout -s KILL 120 sh -c 'echo "$1" > "$2"' - "$v" "$f" 2>&1)
		echo "$f $? ${e##*: }"
	done
}

# wrblocks VALUE FILE FIRST LAST: wr VALUE into FILE of every existing block FIRST..LAST, lowest first (a short
# command line whatever the number of blocks: the control port's line must fit the tty's 4 KiB buffer)
wrblocks() {
	local v f i
	v=$1; f=$2
	for i in $(seq "$3" "$4"); do
		[ -e "$MEM/memory$i" ] && wr "$v" "$MEM/memory$i/$f"
	done
}

# waitwatchers: until no watcher of wr's `timeout` is left (busybox's timeout forks one per command that polls it
# once a second, so each lingers up to a second after its write); at most 5 s. Prints the wait in tenths of a second.
waitwatchers() {
	local i
	i=0
	while pidof timeout > /dev/null && [ $i -lt 50 ]; do usleep 100000; i=$((i + 1)); done
	echo "watchers gone after_ds $i"
}

# count of memory blocks
nblocks() { set -- $MEM/memory*; echo $#; }

# waitblocks N TIMEOUT: until there are N memory blocks (or TIMEOUT seconds pass); then prints the wait in
# centiseconds and how many polls saw a block of the new set offline (auto-onlining happens inside
# add_memory(), so a poll can only catch a block between device_register() and online_pages()).
waitblocks() {
	local want limit t0 polls have now
	want=$1; limit=$(( $2 * 100 ))
	t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
	polls=0
	while :; do
		polls=$((polls + 1))
		set -- $MEM/memory*
		have=$#
		now=$(cut -d' ' -f1 /proc/uptime | tr -d .)
		if [ "$have" = "$want" ]; then
			echo "blocks $have waited_cs $((now - t0)) polls $polls"
			return 0
		fi
		[ $((now - t0)) -ge "$limit" ] && { echo "blocks $have waited_cs $((now - t0)) polls $polls timeout"; return 1; }
		usleep 20000
	done
}

# waitstable SECONDS TIMEOUT: until the block list (ids and states) has not changed for SECONDS.
waitstable() {
	local quiet limit t0 last since cur now
	quiet=$(( $1 * 100 )); limit=$(( $2 * 100 ))
	t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
	last=; since=$t0
	while :; do
		cur=$(cat $MEM/memory*/state | tr '\n' ' ')$(nblocks)
		now=$(cut -d' ' -f1 /proc/uptime | tr -d .)
		[ "$cur" != "$last" ] && { last=$cur; since=$now; }
		if [ $((now - since)) -ge "$quiet" ]; then echo "stable after_cs $((now - t0)) blocks $(nblocks)"; return 0; fi
		[ $((now - t0)) -ge "$limit" ] && { echo "unstable after_cs $((now - t0)) blocks $(nblocks) timeout"; return 1; }
		usleep 100000
	done
}

# activity SECONDS: what a shell does anyway: fork, exec, walk /proc and /sys (dentries, inodes: slab),
# page cache in tmpfs, anonymous memory in short-lived processes.
activity() {
	local end i
	end=$(( $(cut -d' ' -f1 /proc/uptime | tr -d .) + $1 * 100 ))
	i=0
	while [ "$(cut -d' ' -f1 /proc/uptime | tr -d .)" -lt "$end" ]; do
		i=$((i + 1))
		find /sys /proc/sys > /dev/null 2>&1
		cat /proc/[0-9]*/status > /dev/null 2>&1
		dd if=/dev/zero of=/tmp/f$((i % 4)) bs=1M count=8 2> /dev/null
		( x=$(seq 1 2000); : ) &
		wait
	done
	rm -f /tmp/f*
	echo "activity rounds $i"
}

# fill MIB: write zeros into a tmpfs file until about MIB MiB of MemFree are left. tmpfs pages are shmem:
# movable (GFP_HIGHUSER_MOVABLE), unreclaimable with no swap, and mapped by no process, so the OOM killer frees
# none of them: memory the guest is short of, as a study's workload makes it.
fill() {
	local free n
	free=$(awk '/^MemFree:/ { print int($2 / 1024) }' /proc/meminfo)
	n=$((free - $1))
	mkdir -p /pressure  # a tmpfs of its own: /tmp's is capped at half the memory
	grep -q ' /pressure ' /proc/mounts || mount -t tmpfs -o size=100% pressure /pressure
	[ "$n" -gt 0 ] && dd if=/dev/zero of=/pressure/fill bs=1M count="$n" 2>&1 | tail -1
	grep -E '^(MemFree|Shmem):' /proc/meminfo
}

# swapondisk: the virtio-blk disk (/dev/vda) as swap: mkswap writes its header in the first page, swapon adds the
# rest (SwapTotal = the disk less that page)
swapondisk() {
	mkswap /dev/vda > /dev/null && swapon /dev/vda && cat /proc/swaps
}

# fillsize MIB: write MIB MiB into the tmpfs file, however much is free: with swap, reclaim writes shmem pages
# (the file's, and anything else reclaimable) to the swap disk to make room, as a workload larger than the guest
# makes it. Text, not zeros: from 6.12 swap_writepage() writes no zero-filled page (the zeromap), so pswpout would
# count none of them.
fillsize() {
	mkdir -p /pressure
	grep -q ' /pressure ' /proc/mounts || mount -t tmpfs -o size=$(($1 + 64))m pressure /pressure
	yes balloonsim | dd of=/pressure/fill bs=1M count="$1" iflag=fullblock 2>&1 | tail -1
	grep -E '^(MemFree|Shmem|SwapFree):' /proc/meminfo
}

# anon MIB: a process faults in MIB MiB of anonymous memory: busybox dd's read buffer, which the read from
# /dev/zero writes page by page. With no swap and less memory free than that, the OOM killer kills it. Printed:
# oom_kill before and after, and the kernel's line naming the victim (anon-rss: what it had when it was killed).
anon() {
	grep '^oom_kill ' /proc/vmstat
	dd if=/dev/zero of=/dev/null bs="$1"M count=1 2>&1 | tail -1
	grep '^oom_kill ' /proc/vmstat
	dmesg | grep 'Killed process' | tail -1
}

# hold MIB: a process that keeps MIB MiB of anonymous memory: busybox dd's read buffer, filled from /dev/zero, held
# while dd blocks writing it into a pipe nobody reads (sleep). Waits until AnonPages has grown by that much.
# (The harness's hold cases leave room for it: a hold the OOM killer takes would wait a minute and hold nothing.)
hold() {
	local want
	want=$(($(awk '/^AnonPages:/ { print $2 }' /proc/meminfo) + $1 * 1024))
	(dd if=/dev/zero bs="$1"M count=1 2> /dev/null | sleep 1000000) &
	i=0  # at most a minute: a process the OOM killer took never gets there
	while [ "$(awk '/^AnonPages:/ { print $2 }' /proc/meminfo)" -lt "$want" ] && [ $i -lt 300 ]; do
		i=$((i + 1))
		usleep 200000
	done
	grep -E '^(MemFree|AnonPages|PageTables):' /proc/meminfo
}

stty -F /dev/ttyS1 raw -echo 115200
exec 3< /dev/ttyS1 4> /dev/ttyS1
echo "@@READY $(uname -r)" >&4
while read -r line <&3; do
	set -- $line
	cmdno=$1; shift
	echo "@@B $cmdno" >&4
	eval "$*" >&4 2>&1
	echo "@@E $cmdno $?" >&4
done
poweroff -f
