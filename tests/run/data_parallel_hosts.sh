#!/usr/bin/env bash
# Issue 16: two ranks on two "hosts": network namespaces joined by a veth pair, each rank seeing
# only its own namespace's address (rank 0's TCP store on 10.231.<n>.1, Gloo bound to the veth by
# GLOO_SOCKET_IFNAME), as two machines would be started by hand or by a scheduler. Their results must
# equal a two-process run on loopback bit for bit (the same shards and the same two-rank sums).
# Needs root and `ip netns` (iproute2); exits 77 (CTest: skipped) otherwise.
#   data_parallel_hosts.sh CLI WORKDIR
set -uo pipefail
CLI=$1 WORK=$2
mkdir -p "$WORK"
PY="python3 -s"
export OMP_NUM_THREADS=1
if [[ $(id -u) -ne 0 ]] || ! command -v ip > /dev/null; then
  echo "skipped: needs root and iproute2 for network namespaces"
  exit 77
fi
suffix=$(( $$ % 200 + 20 ))
ns0=clp-host0-$$ ns1=clp-host1-$$ veth0=clpa$suffix veth1=clpb$suffix
net=10.231.$suffix
cleanup() { ip netns del "$ns0" 2> /dev/null; ip netns del "$ns1" 2> /dev/null; }
trap cleanup EXIT
if ! ip netns add "$ns0" 2> "$WORK/ip.log" || ! ip netns add "$ns1" 2>> "$WORK/ip.log"; then
  cat "$WORK/ip.log"
  echo "skipped: this machine does not allow network namespaces"
  exit 77
fi
if ! { ip link add "$veth0" type veth peer name "$veth1" &&
       ip link set "$veth0" netns "$ns0" && ip link set "$veth1" netns "$ns1" &&
       ip -n "$ns0" addr add "$net.1/24" dev "$veth0" && ip -n "$ns1" addr add "$net.2/24" dev "$veth1" &&
       ip -n "$ns0" link set lo up && ip -n "$ns1" link set lo up &&
       ip -n "$ns0" link set "$veth0" up && ip -n "$ns1" link set "$veth1" up; } 2>> "$WORK/ip.log"; then
  cat "$WORK/ip.log"
  echo "skipped: this machine cannot join network namespaces with a veth pair"
  exit 77
fi
# The hosts cannot reach each other's loopback: only 10.231.x addresses connect them.
args=(--method l2p --set pretrained= --set backbone.depth=5 --set backbone.embed_dim=32 --set backbone.num_heads=2
      --set scenario.num_tasks=5 --set scenario.train_per_class=12 --set scenario.test_per_class=10
      --set train.epochs=2 --set train.batch_size=8 --set train.eval_batch_size=16 --set save_checkpoint=false
      --set threads=1 --quiet --overwrite)
common=(WORLD_SIZE=2 MASTER_ADDR=$net.1 MASTER_PORT=29517 CLPROMPT_DIST_TIMEOUT=60)
ip netns exec "$ns0" env "${common[@]}" RANK=0 LOCAL_RANK=0 GLOO_SOCKET_IFNAME="$veth0" \
  "$CLI" run "${args[@]}" --out "$WORK/host0" > "$WORK/host0.log" 2>&1 &
host0=$!
ip netns exec "$ns1" env "${common[@]}" RANK=1 LOCAL_RANK=0 GLOO_SOCKET_IFNAME="$veth1" \
  "$CLI" run "${args[@]}" --out "$WORK/host1" > "$WORK/host1.log" 2>&1
rc1=$?
wait $host0
rc0=$?
if [[ $rc0 != 0 || $rc1 != 0 ]]; then
  echo "--- host 0"; cat "$WORK/host0.log"; echo "--- host 1"; cat "$WORK/host1.log"
  echo "FAIL: two hosts: exit $rc0 / $rc1"
  exit 1
fi
"$CLI" run "${args[@]}" --nproc 2 --out "$WORK/loopback" > "$WORK/loopback.log" 2>&1 || { cat "$WORK/loopback.log"; echo "FAIL: loopback run"; exit 1; }
if [[ -n $(ls "$WORK"/host1/*/results.json 2> /dev/null) ]]; then echo "FAIL: rank 1 wrote results"; exit 1; fi
$PY - "$WORK"/host0/*/results.json "$WORK"/loopback/*/results.json <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
same = a["accuracy_matrix"] == b["accuracy_matrix"] and \
       [t["epoch_loss"] for t in a["tasks"]] == [t["epoch_loss"] for t in b["tasks"]] and a["world_size"] == 2
print("two hosts", a["accuracy_matrix"][-1], "loopback", b["accuracy_matrix"][-1])
sys.exit(0 if same else 1)
EOF
if [[ $? != 0 ]]; then echo "FAIL: two hosts and loopback differ"; exit 1; fi
echo "data parallel across two network namespaces: ok"
