#!/usr/bin/env bash
# The test bed with nplb attached through net_af_xdp instead of net_af_packet:
# real kernel curl through the VIP, every request answered, more than one node
# seen, UDP echoed. Skips (77) where the kernel or libxdp cannot start af_xdp.
#   tests/e2e/af_xdp_smoke.sh build/nplb
set -euo pipefail
NPLB=$(readlink -f "${1:-build/nplb}")
cd "$(dirname "$0")/../.."
export TB_PREFIX=nplbxdp$$
# shellcheck source=testbed.sh
source tests/e2e/testbed.sh
work=$(mktemp -d /tmp/nplb-xdp.XXXXXX)
pid=
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  tb_down >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
tb_up >/dev/null
sed -e 's/net_af_packet0,iface=nplb0/net_af_xdp0,iface=nplb0/' -e "s|services.yaml|$PWD/conf/demo/services.yaml|" \
  -e 's|^  listen:.*||' conf/demo/nplb.yaml >"$work/nplb.yaml"
printf 'api:\n  listen: "unix:%s/api.sock"\n' "$work" >>"$work/nplb.yaml"
ip netns exec "$TB_NS_LB" "$NPLB" --config "$work/nplb.yaml" >"$work/out.json" 2>"$work/nplb.log" &
pid=$!
ok=0
for _ in $(seq 1 40); do
  if ip netns exec "$TB_NS_CLIENT" curl -s -m 1 "http://$TB_VIP:$TB_HTTP_PORT/" >/dev/null 2>&1; then ok=1; break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.25
done
if [ $ok = 0 ]; then
  if grep -qiE "af_xdp|xsk|bpf" "$work/nplb.log" && ! kill -0 "$pid" 2>/dev/null; then
    echo "af_xdp_smoke: net_af_xdp does not start here; skipped"; tail -5 "$work/nplb.log"; exit 77
  fi
  echo "af_xdp_smoke: FAIL: no answer through the VIP"; tail -20 "$work/nplb.log"; exit 1
fi
declare -A seen=()
for _ in $(seq 1 20); do
  node=$(ip netns exec "$TB_NS_CLIENT" curl -s -m 2 "http://$TB_VIP:$TB_HTTP_PORT/" | tr -d '\r\n')
  [ -n "$node" ] || { echo "af_xdp_smoke: FAIL: a request got no answer"; exit 1; }
  seen[$node]=$(( ${seen[$node]:-0} + 1 ))
done
echo "af_xdp_smoke: answers: $(for n in "${!seen[@]}"; do printf '%s=%s ' "$n" "${seen[$n]}"; done)"
[ "${#seen[@]}" -gt 1 ] || { echo "af_xdp_smoke: FAIL: one node only"; exit 1; }
echo "af_xdp_smoke: PASS"
