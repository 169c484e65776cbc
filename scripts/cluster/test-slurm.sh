#!/bin/bash
# test-slurm.sh LLDIFF: run docs/cluster.md's Slurm example on a real,
# throwaway single-node Slurm cluster and check that the merged report of a
# 3-task job array equals an unsharded run (make test-cluster).
#
# Needs root and the Debian packages slurm-wlm and munge (it installs
# nothing). Everything lives in a temporary directory: a generated munge
# key and slurm.conf (this host as the only node, proctrack/linuxproc and
# task/none: no cgroups, no systemd), munged, slurmctld and slurmd started
# here on free ports, and stopped on exit, failure or interrupt.
set -euo pipefail

LLDIFF=$(realpath "${1:?usage: test-slurm.sh path/to/lldiff}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=${MODEL:-$ROOT/testdata/models/stories260K.gguf}
TIMEOUT=${TIMEOUT:-300} # seconds for the jobs

for c in munged slurmctld slurmd sbatch scontrol squeue; do
	command -v "$c" >/dev/null 2>&1 || { echo "test-slurm: $c not found: apt-get install slurm-wlm munge" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "test-slurm: run as root (it starts munged, slurmctld and slurmd)" >&2; exit 1; }

T=$(mktemp -d /tmp/lldiff-slurm.XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
	rc=$?
	# stop the daemons this script started (their process ids), and wait
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	if [ "$rc" != 0 ]; then
		echo "test-slurm: FAILED; logs:" >&2
		for f in "$T"/*.log "$T"/work/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 20 "$f" >&2; }; done
	fi
	rm -rf "$T"
	exit "$rc"
}
trap cleanup EXIT INT TERM

free_port() { # a TCP port nobody listens on
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# munge: its own key, socket and state under $T
mkdir -p "$T/munge"
chmod 755 "$T/munge" # munged wants its socket reachable
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
munged --foreground --force --key-file="$T/munge/munge.key" --socket="$T/munge/munge.socket" \
	--pid-file="$T/munge/munged.pid" --seed-file="$T/munge/seed" --log-file="$T/munged.log" 2>>"$T/munged.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$T/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$T/munge/munge.socket" ] || { echo "test-slurm: munged did not start" >&2; exit 1; }

# slurm.conf: this host, as slurmd -C describes it
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")
mkdir -p "$T/state" "$T/spool" "$T/work"
cat > "$T/slurm.conf" <<EOF
ClusterName=lldifftest
SlurmctldHost=$HOST
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.socket
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
$NODE State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$T/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" >>"$T/slurmctld.log" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >>"$T/slurmd.log" 2>&1 &
PIDS+=($!)
for i in $(seq 60); do
	state=$(scontrol show node "$HOST" 2>/dev/null | sed -n 's/.*State=\([A-Z+]*\).*/\1/p' | head -n 1)
	case "$state" in IDLE*|MIXED*|ALLOCATED*) break ;; esac
	[ "$i" = 60 ] && { echo "test-slurm: node $HOST not up (state '$state')" >&2; exit 1; }
	sleep 1
done
echo "test-slurm: single-node cluster up on $HOST"

# the prompts: 9 pairs that differ in the pronoun at the end
cd "$T/work"
for n in Lily Tom Sue Ben Mia Sam Max Zoe Tim; do
	echo "One day $n went to the park with a ball. Then she" >>a.txt
	echo "One day $n went to the park with a ball. Then he" >>b.txt
done
export LLDIFF MODEL A="$T/work/a.txt" B="$T/work/b.txt" OUT="$T/work/out" NGL=0

# docs/cluster.md's job scripts, as written: command-line options override
# the #SBATCH lines that ask for what this node lacks (a GPU, 8 cores)
small=(--gres=none --cpus-per-task=1 --mem=200M --chdir="$T/work" --output="$T/work/%x-%A_%a.log")
jid=$(sbatch --parsable --array=0-2 "${small[@]}" "$ROOT/scripts/cluster/contrast-array.sbatch")
jid=${jid%%;*}
mid=$(sbatch --parsable --dependency=afterok:"$jid" "${small[@]}" --output="$T/work/merge-%j.log" "$ROOT/scripts/cluster/merge.sbatch")
mid=${mid%%;*}
echo "test-slurm: submitted array job $jid (3 tasks) and merge job $mid (afterok:$jid)"

# the unsharded run, meanwhile
"$LLDIFF" contrast -m "$MODEL" --a "$A" --b "$B" --paired --json >one.json

end=$((SECONDS + TIMEOUT))
while :; do
	st=$(scontrol show job "$mid" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1)
	case "$st" in
	COMPLETED) break ;;
	FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|"")
		echo "test-slurm: merge job $mid ended $st" >&2
		scontrol show job "$jid" >&2 || true
		exit 1 ;;
	esac
	if [ "$SECONDS" -ge "$end" ]; then
		echo "test-slurm: jobs not done after ${TIMEOUT}s (merge job $st)" >&2
		squeue >&2 || true
		exit 1
	fi
	sleep 1
done
ls "$OUT/parts" | grep -q part-2 || { echo "test-slurm: no part of task 2" >&2; exit 1; }
cd "$ROOT"
go run ./scripts/cluster/jsoncmp "$T/work/one.json" "$OUT/contrast.json"
echo "test-slurm: ok: the merged report of a 3-task Slurm array equals the unsharded run"
