"""The paper's tables and figures, the cost estimate, and the translator comparison."""
