"""The instruments a stage process installs: step and generation timers, lm-eval's
scoring time, and the peak memory of the stage."""

import os
import shutil
import subprocess
import threading
import time

from okapi_pipeline.gpu_check.measures import step_timing


def synchronize() -> None:
    """Wait for the GPU: its work is asynchronous, and a step ends when its kernels end."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepTimer:
    """A trainer callback, added to every trainer the stage creates: step times, trl's
    token count, and the dtype the training forward computes in.

    It also stops checkpoint writes: they are not part of a step, and at 7B one
    checkpoint (weights and optimizer state) is about 85 GB. The checkpoint code is
    the same on CPU and GPU and is tested there; the multi-GPU stage keeps its FSDP one.
    """

    @classmethod
    def install(cls):
        from transformers import TrainerCallback
        from transformers.trainer import DEFAULT_CALLBACKS

        class Callback(cls, TrainerCallback):
            pass

        timer = Callback()
        # Trainer and trl's PPOTrainer both start from this list, so every trainer gets the timer.
        DEFAULT_CALLBACKS.append(timer)
        return timer

    def __init__(self):
        self.begin, self.marks, self.num_tokens = None, [], None
        self.dtypes = {"train": set(), "no_grad": set()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._watch_dtype(model)
        synchronize()
        self.begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.marks.append(time.perf_counter())
        control.should_save = False
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "num_tokens" in logs:
            self.num_tokens = logs["num_tokens"]

    def _watch_dtype(self, model) -> None:
        """Record the output dtype of the first trainable linear layer, in training and not."""
        import torch

        for module in model.modules() if model is not None else []:
            if isinstance(module, torch.nn.Linear) and any(p.requires_grad for p in module.parameters()):
                module.register_forward_hook(self._record_dtype)
                return

    def _record_dtype(self, module, inputs, output):
        import torch

        self.dtypes["train" if torch.is_grad_enabled() else "no_grad"].add(str(output.dtype).split(".")[-1])

    def timing(self, tokens: int) -> dict:
        """Step times and tokens/s (measures.step_timing), and the training forward's dtype."""
        return {
            **step_timing(self.begin, self.marks, tokens),
            "compute_dtype": ",".join(sorted(self.dtypes["train"])) or None,
        }


class GenerationCounter:
    """Wraps transformers' generate(): time inside it, prompt and new tokens (padding excluded)."""

    @classmethod
    def install(cls):
        from transformers.generation.utils import GenerationMixin

        counter, original = cls(), GenerationMixin.generate

        def generate(model, *args, **kwargs):
            synchronize()
            started = time.perf_counter()
            output = original(model, *args, **kwargs)
            synchronize()
            counter.add(model, args, kwargs, output, time.perf_counter() - started)
            return output

        GenerationMixin.generate = generate
        return counter

    def __init__(self):
        self.seconds, self.prompt_tokens, self.new_tokens, self.dtype = 0.0, 0, 0, None

    def add(self, model, args, kwargs, output, seconds) -> None:
        sequences = getattr(output, "sequences", output)
        inputs, mask = kwargs.get("input_ids", args[0] if args else None), kwargs.get("attention_mask")
        config = kwargs.get("generation_config") or model.generation_config
        pad = kwargs.get("pad_token_id", getattr(config, "pad_token_id", None))
        new = sequences[:, inputs.shape[1] :]
        self.seconds += seconds
        self.prompt_tokens += int(mask.sum()) if mask is not None else inputs.numel()
        self.new_tokens += int((new != pad).sum()) if pad is not None else new.numel()
        self.dtype = self.dtype or str(model.dtype).split(".")[-1]


class LmEvalTimer:
    """Wraps lm-eval's evaluate(): the scoring time without model loading, and the batch
    sizes that `batch_size: auto` chose."""

    @classmethod
    def install(cls):
        import lm_eval.evaluator as evaluator

        timer, original = cls(), evaluator.evaluate

        def evaluate(*args, **kwargs):
            started = time.perf_counter()
            results = original(*args, **kwargs)
            synchronize()
            timer.seconds = time.perf_counter() - started
            lm = kwargs.get("lm", args[0] if args else None)
            timer.batch_sizes = list(getattr(lm, "batch_sizes", {}).values()) or getattr(lm, "batch_size", None)
            return results

        # simple_evaluate looks evaluate() up in its module when it calls it.
        evaluator.evaluate = evaluate
        return timer

    def __init__(self):
        self.seconds, self.batch_sizes = None, None


class DeviceMemoryPoller:
    """Peak used memory of the visible GPUs by nvidia-smi, twice a second.

    It sees what torch's own counter cannot: other processes of the stage (accelerate's
    workers, vLLM's engine) and memory outside torch's allocator.
    """

    def __init__(self):
        self.peak_mb = None
        self.command = shutil.which("nvidia-smi")
        if self.command:
            threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        select = ["-i", visible] if visible else []
        while True:
            try:
                used = subprocess.run(
                    [self.command, "--query-gpu=memory.used", "--format=csv,noheader,nounits", *select],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.split()
                self.peak_mb = max([self.peak_mb or 0, *map(float, used)])
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            time.sleep(0.5)


def peak_memory(poller: DeviceMemoryPoller | None) -> dict:
    """torch's peak allocation on a GPU (nvidia-smi's when torch saw none here), else peak RSS."""
    import resource

    import torch

    facts = {
        "peak_rss_gb": max(
            resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        / 2**20
    }
    device_gb = poller.peak_mb / 1024 if poller and poller.peak_mb else None
    allocated = (
        torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() and torch.cuda.is_initialized() else 0
    )
    facts["peak_device_memory_gb"] = device_gb
    if allocated:
        facts.update(peak_memory_gb=allocated, memory_kind="cuda alloc")
    elif device_gb:
        facts.update(peak_memory_gb=device_gb, memory_kind="nvidia-smi")
    else:
        facts.update(peak_memory_gb=facts["peak_rss_gb"], memory_kind="RSS")
    return facts
