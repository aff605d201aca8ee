"""Loss functions: plain functions of tensors and labels, combined by a Criterion."""
