#!/usr/bin/env bash
# Multi-host GPU training: start `gw-jax train` on every host of a hostfile, one process per host.
#
#   launch/gpu_train.sh --hosts hosts.txt --config configs/gigaworld0_2b.py --workdir /shared/run1 \
#       [--port 8476] [--dry-run] [-- --config.train.num_steps=100000]
#
# hosts.txt: one ssh-reachable host per line; the first one is the jax.distributed coordinator.
# Every host must already have this checkout installed (pip install -e .) at the same path and see
# --workdir (a shared filesystem or a gs:// bucket). Logs go to ~/gw_train.log on each host.
set -euo pipefail

HOSTS="" CONFIG="" WORKDIR="" PORT=8476 DRY=0 EXTRA=()
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hosts) HOSTS="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "gpu_train.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for var in HOSTS CONFIG WORKDIR; do
  if [[ -z "${!var}" ]]; then echo "gpu_train.sh: --${var,,} is required" >&2; exit 2; fi
done
[[ -f "$HOSTS" ]] || { echo "gpu_train.sh: --hosts $HOSTS: no such file" >&2; exit 2; }
mapfile -t hosts < <(grep -v '^\s*\(#\|$\)' "$HOSTS")
[[ ${#hosts[@]} -gt 0 ]] || { echo "gpu_train.sh: --hosts $HOSTS lists no hosts" >&2; exit 2; }

coordinator="${hosts[0]}:$PORT"
for i in "${!hosts[@]}"; do
  cmd="cd $(pwd) && GW_JAX_COORDINATOR=$coordinator GW_JAX_NUM_PROCESSES=${#hosts[@]} GW_JAX_PROCESS_ID=$i"
  cmd+=" nohup gw-jax train --config $CONFIG --workdir $WORKDIR --no-progress ${EXTRA[*]:-} > ~/gw_train.log 2>&1 &"
  printf '+ ssh %q %q\n' "${hosts[$i]}" "$cmd"
  if [[ $DRY -eq 0 ]]; then ssh "${hosts[$i]}" "$cmd"; fi
done
echo "started ${#hosts[@]} processes; coordinator $coordinator"
