"""Training, evaluation and probing of any nn.Module on an in-memory Dataset, for the dataset's task."""
