#!/bin/bash
# GPU check of the process runtime on a machine with an NVIDIA GPU and PyTorch: each GPU job
# gets its own device, CPU jobs see none, a second GPU job waits for the first, `top` reports
# GPU use.  Where pip cannot fetch, bring the wheels the machine lacks in .wheels/ first:
#   pip download --no-deps -d .wheels PyJWT aiodocker prompt-toolkit wcwidth
# Run from the repository root: bash bench/gpu_check.sh
set -u
python3 -m pip install -q --no-index --no-deps --target /tmp/deps .wheels/*.whl 2>&1 | tail -2
export PYTHONPATH=$PWD:/tmp/deps HOME=/tmp/h NEURO_CONFIG=/tmp/h/.neuro
mkdir -p /tmp/h/.neuro/server
printf '[server]\nruntime = "process"\nkill_grace_seconds = 3\n' > /tmp/h/.neuro/server/server.toml
N="python3 -m neuro_cli"
PY=$(command -v python3)
nvidia-smi -L
echo "== config"; $N config show
echo "== gpu job"; $N run --preset gpu-small ubuntu -- sh -c 'echo CVD=[$CUDA_VISIBLE_DEVICES] ORDER=$CUDA_DEVICE_ORDER; '"$PY"' -c "import torch; print(\"gpu job: torch sees\", torch.cuda.device_count(), torch.cuda.get_device_name(0))"'
echo "rc=$?"
echo "== cpu job"; $N run --preset cpu-small ubuntu -- sh -c 'echo CVD=[$CUDA_VISIBLE_DEVICES]; '"$PY"' -c "import torch; print(\"cpu job: torch sees\", torch.cuda.device_count())"'
echo "rc=$?"
echo "== busy gpu job + a second one that must wait"
J=$($N run -q --detach --preset gpu-small ubuntu -- "$PY" -c "
import torch, time
x = torch.randn(8192, 8192, device='cuda'); t = time.time()
while time.time() - t < 60:
    x = x @ x; x = x / x.norm()
torch.cuda.synchronize()")
echo "busy=$J"
W=$($N run -q --detach --preset gpu-small ubuntu -- sh -c 'echo second-got CVD=[$CUDA_VISIBLE_DEVICES]')
echo "waiting=$W"
$N capacity
for i in 1 2 3 4 5 6 7 8 9 10; do $N top --no-stream --json "$J" | tr -d '\n '; echo; sleep 1; done | tail -3
$N status "$W" | grep -E "Status|Reason"
$N kill "$J"
for i in $(seq 1 60); do $N status "$W" | grep -q "Status: succeeded" && break; sleep 0.5; done
$N status "$W" | grep -E "Status|Exit"
$N logs "$W"
$N server stop
