/**
 * What the machine is, as the engine's own Python sees it (its torch, its CUDA), and the parameter
 * count of a base model (for model FLOPs utilisation), built on the meta device so no weight loads.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { enginePython } from '../../activities/engine-process';
import type { GpuCheckMachine } from '../../schemas/gpu-check';

const root = join(import.meta.dirname, '..', '..');
// The engine's own interpreter (TUNELINE_PYTHON, else .venv's), so the figures describe the torch that trains.
const python = enginePython();

function runPython(code: string, args: string[] = []): string {
  const done = spawnSync(python, ['-c', code, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
  });
  if (done.error) throw new Error(`cannot run ${python}: ${done.error.message}. Run \`npm run setup\` first.`);
  if (done.status !== 0) throw new Error(`${python} failed (exit ${done.status}): ${done.stderr.trim().split('\n').slice(-5).join('\n')}`);
  return done.stdout.trim().split('\n').at(-1)!;
}

const TORCH_PROBE = `
import json, torch
cuda = torch.cuda.is_available()
n = torch.cuda.device_count() if cuda else 0
print(json.dumps({
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "gpus": [torch.cuda.get_device_name(i) for i in range(n)],
    "gpuMemoryBytes": torch.cuda.get_device_properties(0).total_memory if n else None,
    "bf16": bool(n and torch.cuda.is_bf16_supported()),
}))
`;

/** GPUs `nvidia-smi -L` lists; 0 when there is no nvidia-smi. */
export function nvidiaSmiGpus(): number {
  const listed = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
  if (listed.error || listed.status !== 0) return 0;
  return listed.stdout.split('\n').filter((line) => line.startsWith('GPU ')).length;
}

export function probeMachine(): GpuCheckMachine {
  const seen = JSON.parse(runPython(TORCH_PROBE)) as Pick<GpuCheckMachine, 'torch' | 'cuda' | 'gpus' | 'gpuMemoryBytes' | 'bf16'>;
  const gpuCount = seen.gpus.length;
  return {
    device: gpuCount > 0 ? 'cuda' : 'cpu',
    deviceName: seen.gpus[0] ?? cpus()[0]?.model.trim() ?? 'unknown CPU',
    gpuCount,
    nvidiaSmiGpus: nvidiaSmiGpus(),
    cpuCores: availableParallelism(),
    ...seen,
  };
}

const PARAMETER_COUNT = `
import sys, torch
from transformers import AutoConfig, AutoModelForCausalLM
from engine.models import resolve_base
config = AutoConfig.from_pretrained(resolve_base(sys.argv[1]))
with torch.device("meta"):
    model = AutoModelForCausalLM.from_config(config)
print(sum(p.numel() for p in model.parameters()))
`;

/** Every parameter of the base model (tied embeddings once), as the engine resolves `model.base`. */
export function baseModelParameters(base: string): number {
  return Number(runPython(PARAMETER_COUNT, [base]));
}
