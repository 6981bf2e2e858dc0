"""Check and time every GPU path of the pipeline in one command (`tools/gpu_check.py`).

Random-weight models of the real architecture and size are built locally (no hub)
with the demo tokenizer, saved, and loaded by the project's own loaders exactly as a
hub model would be. Then, per model, each stage runs in a process of its own with its
own time limit, so that a hang or an out-of-memory error costs one stage, not the run:

  sft, reward_model, ppo, dpo   a few optimizer steps (PPO: one round) through
                                okapi_pipeline.training.launch.run_stage with the paper's settings
                                (configs/paper.yaml; --tiny: config.yaml); only the step
                                count and the data size are changed
  evaluate_hf, evaluate_vllm    okapi_pipeline.evaluation.evaluate on the demo benchmarks (one
                                language), lm-eval batch size as configured (paper: auto)
  generate                      okapi_pipeline.data.generation.generate_responses, K per prompt
  sft_multi_gpu                 SFT through the accelerate relaunch (FSDP), with 2+ GPUs

Every training stage starts from the random base model (the reward and value models
are the base model with a fresh one-logit head), so the stages do not depend on each
other. The training data are cut from the demo corpus so that every sequence fills
the configured max length: the memory peak is the worst case of the real run.

Per stage it reports tokens/s, step time (median over the steps after the first),
peak memory (torch's peak allocation on a GPU, the process's peak RSS on CPU), for
SFT, the reward model and DPO the model FLOPs utilisation (`training_flops_per_token`),
items/s for evaluation; and it checks that the
training forward computes in bf16 where the GPU supports it (float32 elsewhere) and
that every weight below the top trainable blocks is bit-identical after training.
One JSON (--out) and a printed table; the exit status is 1 when a stage failed or
timed out, and the failed stages are named.

Disk: the base model in bf16 plus one stage's saved output in fp32 at a time
(1B: about 7 GB; 7B: about 45 GB). With 2+ GPUs the FSDP SFT run also writes a full
checkpoint with optimizer state (7B: about 85 GB more).

The modules: `shapes` (the models and per-size limits), `settings` (the config and a
stage's cut-down settings), `runner` (the parent: one process per stage), `stages` (the
child: one stage), `stage_data`, `frozen`, `instruments` (timers and memory), `measures`
(the arithmetic: step times, rates, MFU) and `report` (the JSON, the table, the record).
"""
