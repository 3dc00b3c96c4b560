#!/usr/bin/env bash
# Train gw_jax on a Cloud TPU VM slice (all workers), checkpoints to a GCS bucket.
#
#   launch/tpu_train.sh --name gw-v5p --zone us-east5-a --type v5p-64 --bucket gs://my-bucket/run1 \
#       --data gs://my-bucket/packed --config configs/gigaworld0_2b.py [--spot] [--dry-run] \
#       [-- --config.train.num_steps=100000]
#
# Creates the TPU VM if it does not exist (or reuses it), copies this checkout to every worker,
# installs it with the [tpu] extra, and starts `gw-jax train` on all workers (--worker=all) in the
# background with logs in ~/gw_train.log. --bucket is the workdir: checkpoints, metrics.jsonl and
# TensorBoard go there directly. --data is a `gw-jax pack` output (--config.data.packed_dir), read by
# every worker: gs:// (byte-range reads) or a folder present on every worker (e.g. a gcsfuse mount).
# --dry-run prints every command instead of running it.
set -euo pipefail

NAME="" ZONE="" TYPE="" BUCKET="" DATA="" CONFIG="" PROJECT="${CLOUDSDK_CORE_PROJECT:-}" VERSION="v2-alpha-tpuv5"
SPOT=0 DRY=0 EXTRA=()
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --type) TYPE="$2"; shift 2 ;;
    --bucket) BUCKET="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "tpu_train.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for var in NAME ZONE TYPE BUCKET CONFIG; do
  if [[ -z "${!var}" ]]; then echo "tpu_train.sh: --${var,,} is required" >&2; exit 2; fi
done
[[ "$BUCKET" == gs://* ]] || { echo "tpu_train.sh: --bucket must be a gs:// path" >&2; exit 2; }
if [[ -n "$DATA" && "$DATA" != gs://* && "$DATA" != /* ]]; then
  echo "tpu_train.sh: --data must be gs://... or an absolute path present on every worker (e.g. a gcsfuse mount)" >&2
  exit 2
fi
[[ -f "$CONFIG" ]] || { echo "tpu_train.sh: --config $CONFIG: no such file" >&2; exit 2; }

run() {  # print, and run unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ $DRY -eq 0 ]]; then "$@"; fi
}
project_flag=(); [[ -n "$PROJECT" ]] && project_flag=(--project "$PROJECT")
tpu=(gcloud compute tpus tpu-vm)

if [[ $DRY -eq 1 ]] || ! "${tpu[@]}" describe "$NAME" --zone "$ZONE" "${project_flag[@]}" >/dev/null 2>&1; then
  create=("${tpu[@]}" create "$NAME" --zone "$ZONE" --accelerator-type "$TYPE" --version "$VERSION" "${project_flag[@]}")
  [[ $SPOT -eq 1 ]] && create+=(--spot)
  run "${create[@]}"
fi

# Ship this checkout (tracked files only) and install it on every worker.
archive="/tmp/gw_jax_src.tar.gz"
run git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
run "${tpu[@]}" scp "$archive" "$NAME:~/gw_jax_src.tar.gz" --zone "$ZONE" --worker=all "${project_flag[@]}"
run "${tpu[@]}" ssh "$NAME" --zone "$ZONE" --worker=all "${project_flag[@]}" --command \
  "mkdir -p ~/gw_jax && tar -xzf ~/gw_jax_src.tar.gz -C ~/gw_jax && pip install -q -e \"\$HOME/gw_jax[tpu]\""

# Start training on all workers; jax.distributed auto-detects the slice. Preemption sends SIGTERM,
# on which gw-jax train saves a checkpoint; rerunning this script resumes from the bucket.
data_flag=""; [[ -n "$DATA" ]] && data_flag="--config.data.packed_dir=$DATA"
train_cmd="cd ~/gw_jax && nohup gw-jax train --config $CONFIG --workdir $BUCKET $data_flag --no-progress ${EXTRA[*]:-} > ~/gw_train.log 2>&1 &"
run "${tpu[@]}" ssh "$NAME" --zone "$ZONE" --worker=all "${project_flag[@]}" --command "$train_cmd"
echo "started: logs on each worker in ~/gw_train.log; checkpoints, metrics and TensorBoard under $BUCKET${DATA:+; data from $DATA}"
