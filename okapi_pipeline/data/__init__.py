"""The paper's data: instructions (Alpaca, Self-Instruct or the released data), the split,
translation, joint data, and the ranking stage's generation, back-translation, ranking and pairs."""
