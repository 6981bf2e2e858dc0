"""TensorBoard logs of a tiny SFT run, written offline into the model folder."""


def test_tensorboard_logs_offline_into_the_model_folder(tmp_path, tiny_llama_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from okapi_pipeline.config import load_schema, validate_config
    from okapi_pipeline.jsonl import write_jsonl
    from okapi_pipeline.training.sft import train_sft
    from tests.support.workflow import merged_config

    demo = validate_config(merged_config(), load_schema())["sft"]
    settings = {**demo, "report_to": "tensorboard", "epochs": 1, "effective_batch_size": 4, "held_out_fraction": 0.0}
    records = [{"id": str(i), "instruction": f"Count to {i}.", "input": "", "output": f"{i}"} for i in range(8)]
    write_jsonl(tmp_path / "sft.jsonl", records)
    train_sft(tiny_llama_dir, tmp_path / "sft.jsonl", tmp_path / "sft", settings, tmp_path / "checkpoints", threads=1)
    (events,) = (tmp_path / "sft" / "runs").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    assert len(accumulator.Scalars("train/loss")) == 2  # 8 records / batch 4, one epoch
    assert not (tmp_path / "checkpoints").exists()
