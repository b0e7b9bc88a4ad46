#!/usr/bin/env bash
# Start a TVM RPC tracker on 127.0.0.1:9190 and a "Raspberry Pi" registered with key rpi4: Debian's
# aarch64 python3.11 with the aarch64 TVM runtime wheels, run under qemu-aarch64-static (built once into
# ~/.cache/edgec by tests/arm_env.py of an edgec checkout; ~300 MB, cache that folder in CI).
# Usage: EDGEC_SRC=path/to/edgec examples/ci/emulated_pi.sh   (needs qemu-user-static, tornado)
set -euo pipefail
SRC="${EDGEC_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}"
PY=$(python -c "import sys; sys.path.insert(0, '$SRC/tests'); import arm_env; print(arm_env.emulated_python())")
python -m tvm.exec.rpc_tracker --host 127.0.0.1 --port 9190 --port-end 9191 &
"$PY" -c "import sys, runpy; sys.executable = '$PY'
sys.argv = ['rpc_server', '--host', '127.0.0.1', '--port', '9300', '--port-end', '9320',
            '--tracker', '127.0.0.1:9190', '--key', 'rpi4']
runpy.run_module('tvm.exec.rpc_server', run_name='__main__')" &
for _ in $(seq 120); do  # the emulated Python takes a while to import TVM
  python -m tvm.exec.query_rpc_tracker --host 127.0.0.1 --port 9190 2>/dev/null | grep -q '^rpi4 ' && exit 0
  sleep 1
done
echo "the emulated rpi4 did not register with the tracker" >&2
exit 1
