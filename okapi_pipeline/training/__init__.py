"""Training: the launcher, the one trainer sequence, and the four stages (SFT, reward model,
PPO, DPO), with what is saved beside a model."""
